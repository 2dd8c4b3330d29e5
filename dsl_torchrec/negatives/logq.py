"""logQ correction: log of each candidate's expected count in the step's candidate set."""

from __future__ import annotations

import numpy as np
import torch

from .sampler import UniformSampler


class ExpectedCountLogQ:
    """log E[count of item j among this step's candidates] under every enabled source:
    global in-batch positives (global batch × training frequency of j) plus the sampler's
    expected count. Frequencies come from exact training counts."""

    def __init__(self, train_counts: np.ndarray, global_batch: int, in_batch: bool,
                 sampler: UniformSampler | None) -> None:
        counts = torch.as_tensor(train_counts, dtype=torch.float64)
        self.freq = counts / counts.sum().clamp_min(1.0)
        self.global_batch = global_batch if in_batch else 0
        self.sampler = sampler

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """[C] candidate ids -> [C] float32 log expected count."""
        expected = self.global_batch * self.freq.to(ids.device)[ids]
        if self.sampler is not None:
            expected = expected + self.sampler.expected_count(ids)
        return expected.clamp_min(1e-30).log().float()
