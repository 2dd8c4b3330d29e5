from .evaluate import evaluate_model, evaluate_popularity
from .metrics import metric_sums, summarize
from .retrieval import sharded_topk

__all__ = ["evaluate_model", "evaluate_popularity", "metric_sums", "summarize", "sharded_topk"]
