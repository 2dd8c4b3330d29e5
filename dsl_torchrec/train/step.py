"""One training step (architecture.md, "One training step"): lookups -> candidates -> loss ->
backward with the sparse update fused into it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config, ConfigError, NegativesConfig
from ..data.loader import Batch
from ..losses import build_loss
from ..losses.functional import item_similarity
from ..model.towers import TwoTower
from ..negatives import (
    CandidateAssembler,
    CandidateSet,
    CrossBatchMemory,
    ExpectedCountLogQ,
    PopularitySampler,
    StreamingFrequency,
    UniformSampler,
)


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, mean over this rank's rows (detached)
    loss_out: object  # the loss's LossOutput (diagnostics)
    candidates: CandidateSet


def _no_timer(name: str):
    return contextlib.nullcontext()


class TrainStep:
    """Callable ``(batch, step) -> StepOutput``; runs forward and backward.

    Gradients are those of the GLOBAL mean loss (1/W)·Σ_r L_r: each rank backpropagates its
    local mean L_r; TorchRec's sharded backward and DDP average the table / dense gradients over
    ranks, and the autograd all-gather sums the in-batch contributions onto their owner. Memory
    candidates are detached (no gradient flows into the memory or back to the rows it came from)
    unless ``memory_fresh``: then the memory's live ids are looked up again with the positives
    and sampled ids, and get gradient like sampled negatives (the memory stays detached).

    Stateful pieces (the cross-batch memory, the streaming frequency estimate) are in
    ``state_dict()`` / ``load_state_dict()``; the samplers are stateless functions of
    (seed, step). ``timer(name)`` (optional) is entered around each phase: "lookup",
    "all_gather", "candidates", "loss", "backward" (which also runs the fused sparse optimizer
    and the gradient collectives), "optimizer" (the dense / data-parallel optimizer).
    """

    def __init__(self, model: TwoTower, loss_fn: nn.Module, *, in_batch: bool,
                 sampler: UniformSampler | PopularitySampler | None,
                 log_q: ExpectedCountLogQ | None, mask_accidental_hits: bool,
                 dense_optimizer: torch.optim.Optimizer | None = None,
                 memory: CrossBatchMemory | None = None, mask_same_user: bool = False,
                 memory_fresh: bool = False, timer=None):
        self.model, self.loss_fn = model, loss_fn
        self.in_batch, self.sampler, self.log_q = in_batch, sampler, log_q
        self.mask_accidental_hits, self.mask_same_user = mask_accidental_hits, mask_same_user
        self.memory, self.memory_fresh = memory, memory_fresh and memory is not None
        self.dense_optimizer = dense_optimizer
        self.assembler = CandidateAssembler(
            in_batch=in_batch, memory=memory, log_q=log_q,
            mask_accidental_hits=mask_accidental_hits, mask_same_user=mask_same_user)
        self.set_timer(timer)

    def set_timer(self, timer) -> None:
        self.timer = timer or _no_timer
        self.assembler.timer = self.timer

    def __call__(self, batch: Batch, step: int) -> StepOutput:
        t = self.timer
        device = batch.users.device
        n_pos = batch.items.numel()
        with t("candidates"):
            sampled_ids = self.sampler.sample(step, device) if self.sampler else None
            n_sampled = 0 if sampled_ids is None else sampled_ids.numel()
            memory_ids = self.memory.read(step)[1].to(device) if self.memory_fresh else None
        with t("lookup"):
            parts = [x for x in (batch.items, sampled_ids, memory_ids) if x is not None]
            item_ids = parts[0] if len(parts) == 1 else torch.cat(parts)
            e_user = self.model.user_vectors(batch.users)
            e_items = self.model.item_vectors(item_ids)
            e_pos, e_sampled = e_items[:n_pos], e_items[n_pos:n_pos + n_sampled]
            e_memory = e_items[n_pos + n_sampled:] if self.memory_fresh else None
        cands = self.assembler(e_pos, batch.items, e_sampled, sampled_ids, step=step,
                               users=batch.users, memory_vectors=e_memory)
        with t("loss"):
            pos = (e_user * e_pos).sum(-1)
            neg = e_user @ cands.vectors.T
            item_sim = None
            if getattr(self.loss_fn, "needs_item_sim", False):
                with torch.no_grad():
                    item_sim = item_similarity(e_pos, cands.vectors,
                                               getattr(self.loss_fn, "sim_vectors", "item"))
            out = self.loss_fn(pos, neg, cands.valid, item_sim, cands.log_q)
        with t("optimizer"):
            if self.dense_optimizer is not None:
                self.dense_optimizer.zero_grad(set_to_none=True)
        with t("backward"):
            out.loss.backward()
        with t("optimizer"):
            if self.dense_optimizer is not None:
                self.dense_optimizer.step()
        return StepOutput(out.loss.detach(), out, cands)

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Plain tensors, identical on every rank: {"memory": ..., "frequency": ...} for the
        pieces that are on (empty dict when nothing in the step has state)."""
        state = {}
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        if self.log_q is not None and self.log_q.state_dict():
            state["frequency"] = self.log_q.state_dict()
        return state

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for key, part in (("memory", self.memory),
                          ("frequency", self.log_q if self.log_q is not None
                           and self.log_q.state_dict() else None)):
            if part is None:
                continue  # a piece turned off since the checkpoint: nothing to restore
            if key not in state:
                raise KeyError(f"train step state has no {key!r} (turned on since the "
                               f"checkpoint was written?)")
            part.load_state_dict(state[key])


def _check(neg: NegativesConfig) -> None:
    checks = [
        (neg.memory_size >= 0, "negatives.memory_size must be >= 0"),
        (neg.memory_max_age >= 0, "negatives.memory_max_age must be >= 0 (0 = no limit)"),
        (neg.popularity_alpha >= 0, "negatives.popularity_alpha must be >= 0"),
        (neg.streaming_buckets > 0, "negatives.streaming_buckets must be > 0"),
        (neg.streaming_hashes > 0, "negatives.streaming_hashes must be > 0"),
        (0 < neg.streaming_lr <= 1, "negatives.streaming_lr must be in (0, 1]"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def build_train_step(cfg: Config, data, sm, global_batch: int) -> TrainStep:
    """The step for ``cfg``: candidate sources, masking and logQ from ``cfg.negatives``, the
    loss from ``cfg.loss``. ``data`` is the opened dataset (training counts), ``sm`` the
    ShardedModel, ``global_batch`` = W·B."""
    neg = cfg.negatives
    _check(neg)
    device = getattr(sm.dmp, "device", None) or torch.device("cpu")
    counts = None

    def train_counts():
        nonlocal counts
        if counts is None:
            counts = data.item_counts(cfg.data.train_split)
        return counts

    sampler = None
    if neg.num_sampled > 0:
        if neg.sampling == "popularity":
            sampler = PopularitySampler(train_counts(), neg.num_sampled, neg.popularity_alpha,
                                        cfg.train.seed)
        else:
            sampler = UniformSampler(data.num_items, neg.num_sampled, cfg.train.seed)
    log_q = None
    if neg.logq:
        if neg.frequency == "streaming":
            frequency = StreamingFrequency(
                neg.streaming_buckets, global_batch, num_hashes=neg.streaming_hashes,
                lr=neg.streaming_lr, seed=cfg.train.seed, device=device)
        else:
            frequency = train_counts()
        log_q = ExpectedCountLogQ(frequency, global_batch, neg.in_batch, sampler)
    memory = (CrossBatchMemory(neg.memory_size, cfg.model.dim, neg.memory_max_age, device)
              if neg.memory_size > 0 else None)
    return TrainStep(sm.module, build_loss(cfg.loss), in_batch=neg.in_batch, sampler=sampler,
                     log_q=log_q, mask_accidental_hits=neg.mask_accidental_hits,
                     dense_optimizer=sm.dense_optimizer, memory=memory,
                     mask_same_user=neg.mask_same_user,
                     memory_fresh=neg.memory_vectors == "fresh")
