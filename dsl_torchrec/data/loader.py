"""Per-rank training batches, first version: the train split in memory, one seeded global
permutation per epoch (identical on every rank), each global batch of W·B rows cut into W
equal slices, the tail dropped so every rank takes the same number of steps.

Rank r's batch t is rows [t·W·B + r·B, t·W·B + (r+1)·B) of the epoch's permutation, so W ranks
together see exactly the batches one process with batch W·B would see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    users: torch.Tensor  # [B] int64
    items: torch.Tensor  # [B] int64


class EpochBatches:
    def __init__(self, users: np.ndarray, items: np.ndarray, batch_size: int, rank: int,
                 world_size: int, seed: int) -> None:
        if len(users) < batch_size * world_size:
            raise ValueError(
                f"train split has {len(users)} rows, fewer than one global batch "
                f"(train.batch_size={batch_size} × {world_size} ranks); lower train.batch_size")
        self.users = torch.as_tensor(users, dtype=torch.int64)
        self.items = torch.as_tensor(items, dtype=torch.int64)
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def steps_per_epoch(self) -> int:
        return len(self.users) // self.global_batch

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.users), generator=g)
        for t in range(start_step, self.steps_per_epoch()):
            lo = t * self.global_batch + self.rank * self.batch_size
            idx = perm[lo: lo + self.batch_size]
            yield Batch(self.users[idx], self.items[idx])
