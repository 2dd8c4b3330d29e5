"""dsl_torchrec: a TorchRec trainer for retrieval recommenders with the Dual-scale Softmax Loss."""

__version__ = "0.1.0"
