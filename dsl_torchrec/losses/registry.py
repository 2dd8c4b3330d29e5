"""``build_loss(cfg.loss)``: the loss module named by ``LossConfig.name``."""

from __future__ import annotations

from torch import nn

from ..config import LossConfig
from .modules import BPRLoss, BSLLoss, DSLLoss, PSLLoss, SoftmaxLoss

LOSS_NAMES = ("sl", "dsl", "bsl", "psl", "bpr")


def build_loss(cfg: LossConfig) -> nn.Module:
    """Map ``cfg.name`` in {sl, dsl, bsl, psl, bpr} to its module, configured from ``cfg``."""
    name = cfg.name
    if name == "sl":
        return SoftmaxLoss(cfg.temperature, cfg.include_positive)
    if name == "dsl":
        return DSLLoss(
            temperature=cfg.temperature, include_positive=cfg.include_positive,
            kappa_hard=cfg.kappa_hard, kappa_sim=cfg.kappa_sim, w_max=cfg.w_max,
            slate_size=cfg.slate_size, gamma=cfg.gamma, temp_range=cfg.temp_range,
            dro_scale=cfg.dro_scale, intensity=cfg.intensity, temp_map=cfg.temp_map,
            standardize=cfg.standardize, combine=cfg.combine, branch_weight=cfg.branch_weight,
            sim_vectors=cfg.sim_vectors,
        )
    if name == "bsl":
        return BSLLoss(cfg.temperature, cfg.temperature2)
    if name == "psl":
        return PSLLoss(cfg.temperature, cfg.psl_activation)
    if name == "bpr":
        return BPRLoss()
    raise ValueError(f"unknown loss name {name!r} (known: {', '.join(LOSS_NAMES)})")
