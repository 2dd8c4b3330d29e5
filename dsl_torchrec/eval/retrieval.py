"""Exact top-K over a catalog split into contiguous row ranges, one per rank.

Each rank scores the (gathered) queries against its own item range only, masks excluded items
that fall in it, keeps a local top-K, and the W partial lists are gathered and merged into the
exact global top-K. No rank materialises the whole catalog.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..negatives.all_gather import all_gather_ids


def item_range(num_items: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's slice [lo, hi) of the catalog; ceil-sized blocks like TorchRec's row-wise."""
    block = -(-num_items // world)
    lo = min(rank * block, num_items)
    return lo, min(lo + block, num_items)


def csr_rows(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor):
    """Entries of CSR rows ``rows`` [Q]: (query position [n], column [n])."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    qpos = torch.repeat_interleave(torch.arange(rows.numel()), lengths)
    offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
        torch.cumsum(lengths, 0) - lengths, lengths)
    return qpos, indices[torch.repeat_interleave(starts, lengths) + offsets]


def local_topk(scores: torch.Tensor, lo: int, k: int, exclude_q: torch.Tensor | None = None,
               exclude_items: torch.Tensor | None = None):
    """scores [Q, n_local] of items lo..lo+n_local; exclude (query, global item) pairs.
    Returns (values [Q, k], global ids [Q, k]), padded with -inf / -1 when n_local < k."""
    scores = scores.float().clone()
    if exclude_q is not None and exclude_q.numel():
        scores[exclude_q, exclude_items - lo] = float("-inf")
    kk = min(k, scores.shape[1])
    vals, idx = scores.topk(kk, dim=1) if kk > 0 else (scores[:, :0], scores[:, :0].long())
    ids = idx + lo
    ids[vals == float("-inf")] = -1
    if kk < k:
        pad = k - kk
        vals = torch.cat([vals, vals.new_full((vals.shape[0], pad), float("-inf"))], 1)
        ids = torch.cat([ids, ids.new_full((ids.shape[0], pad), -1)], 1)
    return vals, ids


def merge_topk(vals: torch.Tensor, ids: torch.Tensor, k: int):
    """Partial lists [W, Q, k] from every rank -> exact global top-K [Q, k]. Ties are broken by
    the lower item id, as a single-process ``topk`` over the full catalog would not guarantee,
    so callers compare sets or scores, not tie order."""
    vals = vals.permute(1, 0, 2).reshape(vals.shape[1], -1)
    ids = ids.permute(1, 0, 2).reshape(ids.shape[1], -1)
    top_vals, pos = vals.topk(k, dim=1)
    return top_vals, ids.gather(1, pos)


def sharded_topk(local_scores: torch.Tensor, lo: int, k: int, exclude_q=None, exclude_items=None):
    """Every rank passes the scores of the SAME queries against its own item range; all ranks
    get the exact global (values, ids) [Q, k]."""
    vals, ids = local_topk(local_scores, lo, k, exclude_q, exclude_items)
    if dist.is_initialized() and dist.get_world_size() > 1:
        world = dist.get_world_size()
        vals = all_gather_ids(vals).view(world, *vals.shape)
        ids = all_gather_ids(ids).view(world, *ids.shape)
    else:
        vals, ids = vals.unsqueeze(0), ids.unsqueeze(0)
    return merge_topk(vals, ids, k)
