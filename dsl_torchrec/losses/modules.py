"""nn.Module wrappers of the functional losses: ``forward(pos, neg, valid=None, item_sim=None,
log_q=None) -> LossOutput`` for every loss (``item_sim`` is ignored where unused), with
``needs_item_sim`` telling the trainer whether to compute the [B, C] item similarities."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from . import functional as F
from .functional import LossOutput

__all__ = ["SoftmaxLoss", "DSLLoss", "BSLLoss", "PSLLoss", "BPRLoss"]


class SoftmaxLoss(nn.Module):
    """SL, the backbone and baseline (``functional.sl_loss``)."""

    needs_item_sim: bool = False

    def __init__(self, temperature: float = 0.1, include_positive: bool = True) -> None:
        super().__init__()
        self.temperature = float(temperature)
        self.include_positive = bool(include_positive)

    def forward(self, pos: Tensor, neg: Tensor, valid: Tensor | None = None,
                item_sim: Tensor | None = None, log_q: Tensor | None = None) -> LossOutput:
        return F.sl_loss(pos, neg, valid, log_q, temperature=self.temperature,
                         include_positive=self.include_positive)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, include_positive={self.include_positive}"


class DSLLoss(nn.Module):
    """Dual-scale softmax loss (``functional.dsl_loss``); ``group`` is the process group of the
    all-reduced statistics (None: the default group when initialised, else none)."""

    def __init__(
        self,
        temperature: float = 0.1,
        include_positive: bool = True,
        kappa_hard: float = 0.0,
        kappa_sim: float = 0.0,
        w_max: float | None = None,
        slate_size: int = 20,
        gamma: float = 0.5,
        temp_range: float = 2.0,
        dro_scale: bool = False,
        group: Any = None,
        intensity: str = "lme",
        temp_map: str = "exp",
        standardize: bool = False,
        combine: str = "fused",
        branch_weight: float = 1.0,
        sim_vectors: str = "item",
    ) -> None:
        super().__init__()
        if sim_vectors not in ("item", "centered"):
            raise ValueError(f"sim_vectors must be item or centered, got {sim_vectors!r}")
        # read by the train step, which computes item_sim
        self.sim_vectors = sim_vectors
        self.kwargs: dict[str, Any] = dict(
            temperature=float(temperature), include_positive=bool(include_positive),
            kappa_hard=float(kappa_hard), kappa_sim=float(kappa_sim),
            w_max=None if w_max is None else float(w_max), slate_size=int(slate_size),
            gamma=float(gamma), temp_range=float(temp_range), dro_scale=bool(dro_scale),
            intensity=str(intensity), temp_map=str(temp_map), standardize=bool(standardize),
            combine=str(combine), branch_weight=float(branch_weight),
        )
        self.group = group

    @property
    def needs_item_sim(self) -> bool:
        return self.kwargs["kappa_sim"] != 0.0

    def forward(self, pos: Tensor, neg: Tensor, valid: Tensor | None = None,
                item_sim: Tensor | None = None, log_q: Tensor | None = None) -> LossOutput:
        return F.dsl_loss(pos, neg, valid, item_sim, log_q, group=self.group, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in {**self.kwargs,
                                                 "sim_vectors": self.sim_vectors}.items())


class BSLLoss(nn.Module):
    """Bilateral softmax loss (``functional.bsl_loss``): τ₁ = ``temperature``,
    τ₂ = ``temperature2``."""

    needs_item_sim: bool = False

    def __init__(self, temperature: float = 0.1, temperature2: float = 0.1) -> None:
        super().__init__()
        self.temperature, self.temperature2 = float(temperature), float(temperature2)

    def forward(self, pos: Tensor, neg: Tensor, valid: Tensor | None = None,
                item_sim: Tensor | None = None, log_q: Tensor | None = None) -> LossOutput:
        return F.bsl_loss(pos, neg, valid, log_q, temperature=self.temperature,
                          temperature2=self.temperature2)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, temperature2={self.temperature2}"


class PSLLoss(nn.Module):
    """Pairwise softmax loss (``functional.psl_loss``), activation tanh | atan | relu."""

    needs_item_sim: bool = False

    def __init__(self, temperature: float = 0.1, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ("tanh", "atan", "relu"):
            raise ValueError(f"unknown PSL activation {activation!r} (expected tanh, atan or relu)")
        self.temperature, self.activation = float(temperature), activation

    def forward(self, pos: Tensor, neg: Tensor, valid: Tensor | None = None,
                item_sim: Tensor | None = None, log_q: Tensor | None = None) -> LossOutput:
        return F.psl_loss(pos, neg, valid, log_q, temperature=self.temperature,
                          activation=self.activation)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, activation={self.activation!r}"


class BPRLoss(nn.Module):
    """BPR sanity baseline (``functional.bpr_loss``)."""

    needs_item_sim: bool = False

    def forward(self, pos: Tensor, neg: Tensor, valid: Tensor | None = None,
                item_sim: Tensor | None = None, log_q: Tensor | None = None) -> LossOutput:
        return F.bpr_loss(pos, neg, valid, log_q)
