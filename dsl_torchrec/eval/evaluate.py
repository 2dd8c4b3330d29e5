"""Full-catalog evaluation of the sharded model (and of the popularity baseline) on a split.

Users with at least one item in the split are evaluated in chunks of W·Bq queries; rank r looks
up its Bq of them, the query vectors are all-gathered, each rank scores all of them against its
own item range (``retrieval.item_range``), and ``sharded_topk`` merges the exact top-K. Items the
user has in ``exclude_splits`` (training interactions) are never retrieved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..negatives.all_gather import all_gather_ids
from .metrics import NAMES, metric_sums, summarize
from .retrieval import csr_rows, item_range, sharded_topk

LocalScores = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _world_rank() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _csr(data, split: str):
    indptr, indices = data.user_item_csr(split)
    return torch.as_tensor(indptr, dtype=torch.int64), torch.as_tensor(indices, dtype=torch.int64)


@torch.no_grad()
def evaluate(local_scores: LocalScores, data, split: str, exclude_splits: Sequence[str],
             ks: Sequence[int], batch_size: int) -> dict[str, float]:
    """``local_scores(my_users [Bq], all_users [W·Bq]) -> [W·Bq, n_local]`` scores every query
    of the chunk against this rank's item range; it is called the same number of times on every
    rank (it may run collectives)."""
    world, rank = _world_rank()
    num_items = data.manifest.num_items
    lo, hi = item_range(num_items, rank, world)
    kmax = max(ks)
    target_ptr, target_idx = _csr(data, split)
    excludes = [_csr(data, s) for s in exclude_splits]
    users = torch.nonzero(target_ptr[1:] > target_ptr[:-1]).flatten()
    chunk = world * batch_size
    n_chunks = -(-users.numel() // chunk)
    sums: dict[str, float] = {}
    covered = torch.zeros(hi - lo, dtype=torch.bool)
    for c in range(n_chunks):
        part = users[c * chunk:(c + 1) * chunk]
        n_real = part.numel()
        part = torch.cat([part, part.new_full((chunk - n_real,), int(users[0]))])
        mine = part[rank * batch_size:(rank + 1) * batch_size]
        scores = local_scores(mine, part)
        ex_q, ex_items = [], []
        for ptr, idx in excludes:
            q, items = csr_rows(ptr, idx, part)
            keep = (items >= lo) & (items < hi)
            ex_q.append(q[keep])
            ex_items.append(items[keep])
        _, top = sharded_topk(scores, lo, kmax, torch.cat(ex_q), torch.cat(ex_items))
        # each rank scores the metrics of its own Bq queries (excluding padding) once
        own = torch.arange(rank * batch_size, (rank + 1) * batch_size)
        own = own[own < n_real]
        if own.numel():
            q, items = csr_rows(target_ptr, target_idx, part[own])
            rel = part[own][q] * num_items + items
            codes = part[own].unsqueeze(1) * num_items + top[own]
            hits = torch.isin(codes, rel) & (top[own] >= 0)
            n_rel = target_ptr[part[own] + 1] - target_ptr[part[own]]
            for name, v in metric_sums(top[own], hits, n_rel, list(ks)).items():
                sums[name] = sums.get(name, 0.0) + v
        real_top = top[:n_real, :kmax]
        in_mine = real_top[(real_top >= lo) & (real_top < hi)]
        covered[in_mine - lo] = True
    names = sorted(f"{m}@{k}" for m in NAMES for k in ks)
    vec = torch.tensor([sums.get(n, 0.0) for n in names] + [float(covered.sum())],
                       dtype=torch.float64)
    if world > 1:
        dist.all_reduce(vec)
    out = summarize(dict(zip(names, vec[:-1].tolist())), int(users.numel()),
                    int(vec[-1]), num_items, kmax)
    return out


def rank_slice_vectors(lookup, n: int, chunk: int = 65536) -> torch.Tensor:
    """Vectors [hi-lo, d] of this rank's id range of a table of ``n`` rows
    (``retrieval.item_range``), through ``lookup`` (ids -> vectors, a sharded lookup: every
    rank makes the same number of calls)."""
    world, rank = _world_rank()
    lo, hi = item_range(n, rank, world)
    block = -(-n // world)
    ids = torch.arange(lo, lo + block).clamp(max=n - 1)
    with torch.no_grad():
        out = [lookup(ids[s:s + chunk]) for s in range(0, block, chunk)]
    return torch.cat(out)[: hi - lo]


def item_slice_vectors(model, num_items: int) -> torch.Tensor:
    """This rank's item range as vectors, looked up through the sharded item table."""
    return rank_slice_vectors(model.item_vectors, num_items)


def evaluate_model(model, data, split: str, exclude_splits: Sequence[str], ks: Sequence[int],
                   batch_size: int) -> dict[str, float]:
    items = item_slice_vectors(model, data.manifest.num_items)

    def scores(mine: torch.Tensor, _all: torch.Tensor) -> torch.Tensor:
        q = all_gather_ids(model.user_vectors(mine))
        return q @ items.T

    return evaluate(scores, data, split, exclude_splits, ks, batch_size)


def evaluate_popularity(data, split: str, exclude_splits: Sequence[str], ks: Sequence[int],
                        batch_size: int) -> dict[str, float]:
    """Most popular training items (by count), the user's excluded items masked."""
    world, rank = _world_rank()
    lo, hi = item_range(data.manifest.num_items, rank, world)
    counts = np.asarray(data.item_counts("train"))
    # score = minus the popularity rank (stable: ties go to the lower id), exact in float32
    rank_of = np.empty(len(counts), dtype=np.int64)
    rank_of[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    counts = -torch.as_tensor(rank_of[lo:hi], dtype=torch.float32)

    def scores(_mine: torch.Tensor, all_users: torch.Tensor) -> torch.Tensor:
        return counts.unsqueeze(0).expand(all_users.numel(), -1)

    return evaluate(scores, data, split, exclude_splits, ks, batch_size)


