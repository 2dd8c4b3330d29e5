"""One training step (architecture.md, "One training step"): lookups -> candidates -> loss ->
backward with the sparse update fused into it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import Batch
from ..model.towers import TwoTower
from ..negatives import CandidateSet, ExpectedCountLogQ, UniformSampler, assemble_candidates


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, mean over this rank's rows (detached)
    loss_out: object  # the loss's LossOutput (diagnostics)
    candidates: CandidateSet


class TrainStep:
    """Callable ``(batch, step) -> StepOutput``; runs forward and backward.

    Gradients are those of the GLOBAL mean loss (1/W)·Σ_r L_r: each rank backpropagates its
    local mean L_r; TorchRec's sharded backward and DDP average the table / dense gradients over
    ranks, and the autograd all-gather sums the in-batch contributions onto their owner.
    """

    def __init__(self, model: TwoTower, loss_fn: nn.Module, *, in_batch: bool,
                 sampler: UniformSampler | None, log_q: ExpectedCountLogQ | None,
                 mask_accidental_hits: bool, dense_optimizer: torch.optim.Optimizer | None = None):
        self.model, self.loss_fn = model, loss_fn
        self.in_batch, self.sampler, self.log_q = in_batch, sampler, log_q
        self.mask_accidental_hits = mask_accidental_hits
        self.dense_optimizer = dense_optimizer

    def __call__(self, batch: Batch, step: int) -> StepOutput:
        device = batch.users.device
        n_pos = batch.items.numel()
        sampled_ids = self.sampler.sample(step, device) if self.sampler else None
        item_ids = batch.items if sampled_ids is None else torch.cat([batch.items, sampled_ids])
        e_user = self.model.user_vectors(batch.users)
        e_items = self.model.item_vectors(item_ids)
        e_pos, e_sampled = e_items[:n_pos], e_items[n_pos:]
        cands = assemble_candidates(
            e_pos, batch.items, e_sampled, sampled_ids, in_batch=self.in_batch,
            mask_accidental_hits=self.mask_accidental_hits, log_q_fn=self.log_q,
        )
        pos = (e_user * e_pos).sum(-1)
        neg = e_user @ cands.vectors.T
        item_sim = None
        if getattr(self.loss_fn, "needs_item_sim", False):
            with torch.no_grad():
                item_sim = F.normalize(e_pos, dim=-1) @ F.normalize(cands.vectors, dim=-1).T
        out = self.loss_fn(pos, neg, cands.valid, item_sim, cands.log_q)
        if self.dense_optimizer is not None:
            self.dense_optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.dense_optimizer is not None:
            self.dense_optimizer.step()
        return StepOutput(out.loss.detach(), out, cands)
