"""Top-K ranking metrics from retrieved ids and held-out items (LightGCN / IR-Benchmark form).

Recall@K = hits / |test items|, Precision@K = hits / K, NDCG@K = DCG / IDCG with IDCG over
min(|test|, K) ideal positions, HitRate@K = [hits > 0], MRR@K = 1 / rank of the first hit.
Per-user values are summed here and averaged once over all ranks in ``summarize``.
"""

from __future__ import annotations

import torch

NAMES = ("recall", "ndcg", "precision", "hitrate", "mrr")


def metric_sums(topk_ids: torch.Tensor, hits: torch.Tensor, n_relevant: torch.Tensor,
                ks: list[int]) -> dict[str, float]:
    """topk_ids [Q, Kmax]; hits bool [Q, Kmax] (topk_ids[q, j] is a held-out item of q);
    n_relevant [Q] (> 0). Returns per-metric sums over the Q users."""
    hits = hits.double()
    kmax = hits.shape[1]
    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    out: dict[str, float] = {}
    for k in ks:
        h = hits[:, :k]
        nh = h.sum(1)
        ideal = torch.cumsum(discount[:k], 0)[(n_relevant.clamp(max=k) - 1).long()]
        first = torch.where(h.any(1), h.argmax(1).double() + 1, torch.inf)
        out[f"recall@{k}"] = float((nh / n_relevant).sum())
        out[f"precision@{k}"] = float((nh / k).sum())
        out[f"ndcg@{k}"] = float(((h * discount[:k]).sum(1) / ideal).sum())
        out[f"hitrate@{k}"] = float((nh > 0).double().sum())
        out[f"mrr@{k}"] = float((1.0 / first).sum())
    return out


def summarize(sums: dict[str, float], n_users: int, covered_items: int | None = None,
              num_items: int | None = None, k: int | None = None) -> dict[str, float]:
    out = {name: value / max(n_users, 1) for name, value in sums.items()}
    out["num_users"] = n_users
    if covered_items is not None and num_items:
        out[f"coverage@{k}"] = covered_items / num_items
    return out
