"""Assembly of the candidate set shared by every query of the global batch.

Knows nothing of the loss: it returns candidate vectors, ids, their source and log q, and the
[B_local, C] validity mask (False = not a negative for that row). Candidates, in this order:

    [ global in-batch positives (G, with gradient) | memory (M live entries, detached)
      | sampled negatives (R, with gradient) ]

One all-gather of the positives' vectors (autograd) and one of their ids (with the user ids
when same-user masking is on) per step; the memory and the streaming frequency estimate are
fed from these gathered tensors, so they stay identical on every rank without collectives of
their own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .all_gather import all_gather_ids, all_gather_with_grad
from .memory import CrossBatchMemory

SOURCE_IN_BATCH, SOURCE_SAMPLED, SOURCE_MEMORY = 0, 1, 2


@dataclass
class CandidateSet:
    vectors: torch.Tensor  # [C, d]; in-batch and sampled rows with gradient, memory rows without
    ids: torch.Tensor  # [C] int64
    source: torch.Tensor  # [C] int8, SOURCE_*
    log_q: torch.Tensor | None  # [C] float32
    valid: torch.Tensor  # [B_local, C] bool
    num_memory: int = 0  # M, live memory entries among the candidates


def _no_timer(name: str):
    return contextlib.nullcontext()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


class CandidateAssembler:
    """``(pos_vectors [B, d], pos_ids [B], sampled_vectors [R, d], sampled_ids [R], step=t,
    users=[B]) -> CandidateSet``; this rank's positives and users, the shared sampled negatives
    (identical on every rank).

    ``memory_vectors`` [M, d] (optional): vectors of the memory's live ids at this step, looked
    up afresh by the caller, used instead of the stored detached ones.

    ``log_q``: a callable ``ids -> [C]`` (given ``memory_entries=M`` when a memory is on); if
    it has ``observe(ids, step)`` it is first shown the gathered positives (streaming
    frequencies). ``timer(name)`` gives a context manager around the collectives
    ("all_gather") and the rest ("candidates"), for benchmarks.
    """

    def __init__(self, *, in_batch: bool = True, memory: CrossBatchMemory | None = None,
                 log_q=None, mask_accidental_hits: bool = True, mask_same_user: bool = False,
                 timer=None) -> None:
        self.in_batch, self.memory, self.log_q = in_batch, memory, log_q
        self.mask_accidental_hits, self.mask_same_user = mask_accidental_hits, mask_same_user
        self.timer = timer or _no_timer

    def __call__(self, pos_vectors: torch.Tensor, pos_ids: torch.Tensor,
                 sampled_vectors: torch.Tensor | None = None,
                 sampled_ids: torch.Tensor | None = None, *, step: int = 0,
                 users: torch.Tensor | None = None,
                 memory_vectors: torch.Tensor | None = None) -> CandidateSet:
        memory = self.memory
        if self.mask_same_user and users is None:
            raise ValueError("mask_same_user needs the batch's user ids")
        with self.timer("all_gather"):
            g_vec = g_ids = g_users = None
            if self.in_batch:
                g_vec = all_gather_with_grad(pos_vectors)
            elif memory is not None:  # memory without in-batch candidates: a detached gather
                g_vec = all_gather_ids(pos_vectors.detach())
            if self.mask_same_user:
                both = all_gather_ids(torch.stack([pos_ids.long(), users.long()], 1))
                g_ids, g_users = both[:, 0].contiguous(), both[:, 1].contiguous()
            elif self.in_batch or memory is not None:
                g_ids = all_gather_ids(pos_ids)
        with self.timer("candidates"):
            return self._assemble(pos_vectors, pos_ids, sampled_vectors, sampled_ids, step,
                                  users, g_vec, g_ids, g_users, memory_vectors)

    def _assemble(self, pos_vectors, pos_ids, sampled_vectors, sampled_ids, step, users,
                  g_vec, g_ids, g_users, memory_vectors) -> CandidateSet:
        memory = self.memory
        if g_ids is not None and hasattr(self.log_q, "observe"):
            self.log_q.observe(g_ids, step)
        vecs, ids, src = [], [], []

        def add(v: torch.Tensor, i: torch.Tensor, s: int) -> None:
            vecs.append(v)
            ids.append(i)
            src.append(torch.full(i.shape, s, dtype=torch.int8, device=i.device))

        if self.in_batch:
            add(g_vec, g_ids, SOURCE_IN_BATCH)
        n_mem, mem_at = 0, sum(i.numel() for i in ids)
        if memory is not None:
            m_vec, m_ids, _ = memory.read(step)
            n_mem = m_ids.numel()
            if memory_vectors is not None:  # the memory's ids looked up afresh, with gradient
                if memory_vectors.shape[0] != n_mem:
                    raise ValueError(f"memory_vectors has {memory_vectors.shape[0]} rows, the "
                                     f"memory {n_mem} live entries at step {step}")
                m_vec = memory_vectors
            if n_mem:
                add(m_vec.to(pos_vectors.device, pos_vectors.dtype), m_ids.to(pos_ids.device),
                    SOURCE_MEMORY)
        if sampled_ids is not None and sampled_ids.numel() > 0:
            add(sampled_vectors, sampled_ids, SOURCE_SAMPLED)
        cand_ids = torch.cat(ids)
        cand_vecs = torch.cat(vecs)  # a copy: the memory may be overwritten below

        B = pos_ids.numel()
        if self.mask_accidental_hits:
            valid = cand_ids.unsqueeze(0) != pos_ids.unsqueeze(1)
        else:
            valid = torch.ones(B, cand_ids.numel(), dtype=torch.bool, device=cand_ids.device)
            own = torch.arange(B, device=cand_ids.device)
            if self.in_batch:  # the row's own positive is never its own negative
                valid[own, _rank() * B + own] = False
            if n_mem:  # nor is a stale copy of it from the memory
                valid[:, mem_at: mem_at + n_mem] = (
                    cand_ids[mem_at: mem_at + n_mem].unsqueeze(0) != pos_ids.unsqueeze(1))
        if self.mask_same_user:
            mask_same_user_(valid, cand_ids, pos_ids, users, g_ids, g_users,
                            skip_own=self.mask_accidental_hits)

        if self.log_q is None:
            log_q = None
        elif memory is not None:
            log_q = self.log_q(cand_ids, memory_entries=n_mem)
        else:
            log_q = self.log_q(cand_ids)
        if memory is not None:
            memory.push(g_vec, g_ids, step)
        return CandidateSet(cand_vecs, cand_ids, torch.cat(src), log_q, valid, n_mem)


@torch.no_grad()
def mask_same_user_(valid: torch.Tensor, cand_ids: torch.Tensor, pos_ids: torch.Tensor,
                    users: torch.Tensor, g_ids: torch.Tensor, g_users: torch.Tensor, *,
                    skip_own: bool = False) -> torch.Tensor:
    """valid[b, j] = False where cand_ids[j] is the positive of some global-batch row of the same
    user as local row b. Cost O(B·G) for the user match plus O(masked entries): the candidates
    are sorted once and every (row, item) pair masks its run of equal ids. ``skip_own``: the
    pairs (b, pos_ids[b]) are already masked (accidental hits)."""
    rows, ks = (users.unsqueeze(1) == g_users.unsqueeze(0)).nonzero(as_tuple=True)
    items = g_ids[ks]
    if skip_own:
        keep = items != pos_ids[rows]
        rows, items = rows[keep], items[keep]
    if rows.numel() == 0:
        return valid
    sorted_ids, order = cand_ids.sort()
    lo = torch.searchsorted(sorted_ids, items, right=False)
    n = torch.searchsorted(sorted_ids, items, right=True) - lo
    total = int(n.sum())
    if total == 0:
        return valid
    r = rows.repeat_interleave(n)
    starts = (n.cumsum(0) - n).repeat_interleave(n)
    pos = lo.repeat_interleave(n) + torch.arange(total, device=n.device) - starts
    valid[r, order[pos]] = False
    return valid


def assemble_candidates(
    pos_vectors: torch.Tensor,
    pos_ids: torch.Tensor,
    sampled_vectors: torch.Tensor | None,
    sampled_ids: torch.Tensor | None,
    *,
    in_batch: bool,
    mask_accidental_hits: bool = True,
    log_q_fn=None,
    memory: CrossBatchMemory | None = None,
    mask_same_user: bool = False,
    users: torch.Tensor | None = None,
    step: int = 0,
) -> CandidateSet:
    """One-shot form of ``CandidateAssembler`` (pos_vectors [B, d] / pos_ids [B]: this rank's
    positives; sampled_* [R, d] / [R]: the shared sampled negatives)."""
    return CandidateAssembler(
        in_batch=in_batch, memory=memory, log_q=log_q_fn,
        mask_accidental_hits=mask_accidental_hits, mask_same_user=mask_same_user,
    )(pos_vectors, pos_ids, sampled_vectors, sampled_ids, step=step, users=users)
