"""Shared sampled negatives: R ids per step, identical on every rank without communication."""

from __future__ import annotations

import torch


class UniformSampler:
    """R ids uniform over [0, num_items). Stateless: the draw of step t depends only on
    (seed, t), so every rank and every resumed run draws the same ids."""

    def __init__(self, num_items: int, num_samples: int, seed: int) -> None:
        self.num_items, self.num_samples, self.seed = num_items, num_samples, seed

    def sample(self, step: int, device: torch.device | str = "cpu") -> torch.Tensor:
        g = torch.Generator().manual_seed((self.seed + 1) * 1_000_000_007 + step)
        ids = torch.randint(0, self.num_items, (self.num_samples,), generator=g)
        return ids.to(device)

    def expected_count(self, ids: torch.Tensor) -> torch.Tensor:
        """[C] ids -> [C] expected number of times each id appears among the R draws."""
        return torch.full(ids.shape, self.num_samples / self.num_items, dtype=torch.float64,
                          device=ids.device)
