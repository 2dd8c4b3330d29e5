"""All-gathers over the training group. Vectors keep autograd: the gradient of the gathered
[W·B, d] tensor is summed back (reduce-scatter) onto the rank that produced each slice."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] on each rank -> [W·B, ...], rank-major, differentiable."""
    if _world() == 1:
        return x
    return torch.cat(dist_nn.all_gather(x), dim=0)


@torch.no_grad()
def all_gather_ids(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] on each rank -> [W·B, ...], rank-major, no gradient."""
    if _world() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(_world())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)
