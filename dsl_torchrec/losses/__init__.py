"""Softmax-family losses (dsl-loss.md): SL, DSL, BSL, PSL, BPR.

``functional`` is the pure core (no TorchRec, no process group needed), ``modules`` the
nn.Module wrappers and ``build_loss(cfg.loss)`` the registry."""

from . import functional
from .functional import LossOutput
from .modules import BPRLoss, BSLLoss, DSLLoss, PSLLoss, SoftmaxLoss
from .registry import LOSS_NAMES, build_loss

__all__ = [
    "functional",
    "LossOutput",
    "build_loss",
    "LOSS_NAMES",
    "SoftmaxLoss",
    "DSLLoss",
    "BSLLoss",
    "PSLLoss",
    "BPRLoss",
]
