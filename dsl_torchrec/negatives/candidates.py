"""Assembly of the candidate set shared by every query of the global batch.

Knows nothing of the loss: it returns candidate vectors, ids, their source and log q, and the
[B_local, C] validity mask (False = not a negative for that row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .all_gather import all_gather_ids, all_gather_with_grad

SOURCE_IN_BATCH, SOURCE_SAMPLED = 0, 1


@dataclass
class CandidateSet:
    vectors: torch.Tensor  # [C, d], with gradient
    ids: torch.Tensor  # [C] int64
    source: torch.Tensor  # [C] int8, SOURCE_*
    log_q: torch.Tensor | None  # [C] float32
    valid: torch.Tensor  # [B_local, C] bool


def assemble_candidates(
    pos_vectors: torch.Tensor,
    pos_ids: torch.Tensor,
    sampled_vectors: torch.Tensor | None,
    sampled_ids: torch.Tensor | None,
    *,
    in_batch: bool,
    mask_accidental_hits: bool = True,
    log_q_fn=None,
) -> CandidateSet:
    """pos_vectors [B, d] / pos_ids [B]: this rank's positives; sampled_* [R, d] / [R]: the
    shared sampled negatives (identical on every rank). In-batch candidates are the positives
    of ALL ranks, gathered with autograd."""
    vecs, ids, src = [], [], []
    if in_batch:
        vecs.append(all_gather_with_grad(pos_vectors))
        gathered = all_gather_ids(pos_ids)
        ids.append(gathered)
        src.append(torch.full_like(gathered, SOURCE_IN_BATCH, dtype=torch.int8))
    if sampled_ids is not None and sampled_ids.numel() > 0:
        vecs.append(sampled_vectors)
        ids.append(sampled_ids)
        src.append(torch.full_like(sampled_ids, SOURCE_SAMPLED, dtype=torch.int8))
    cand_ids = torch.cat(ids)
    if mask_accidental_hits:
        valid = cand_ids.unsqueeze(0) != pos_ids.unsqueeze(1)
    else:
        valid = torch.ones(pos_ids.numel(), cand_ids.numel(), dtype=torch.bool,
                           device=cand_ids.device)
    if in_batch and not mask_accidental_hits:
        # the row's own positive is never its own negative, whatever the option says
        world_offset = _rank() * pos_ids.numel()
        own = torch.arange(pos_ids.numel(), device=cand_ids.device)
        valid[own, world_offset + own] = False
    log_q = log_q_fn(cand_ids) if log_q_fn is not None else None
    return CandidateSet(torch.cat(vecs), cand_ids, torch.cat(src), log_q, valid)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0
