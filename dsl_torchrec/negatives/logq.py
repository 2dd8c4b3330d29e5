"""logQ correction: log of each candidate's expected count in the step's candidate set.

The candidate set of a step is the union (with repetitions) of up to three sources, and the
correction of candidate j is the same whatever source this copy of j came from:

    E[n_j] = G · p_j            global in-batch: G positives, each item j with probability p_j
           + M · p_j            memory: the M live entries (not the Q slots: empty and too old
                                entries are not candidates), each an earlier global-batch
                                positive, hence also item j with probability p_j
           + R · q_j            sampler: R draws with replacement from q (uniform: q_j = 1/N)

p_j comes from exact training counts or the streaming estimate (frequency.py); q_j is the
sampler's own distribution, known exactly. Σ over the copies of j of exp(s_j − log E[n_j]) is
then an unbiased estimate of exp(s_j) whatever the mix.
"""

from __future__ import annotations

import numpy as np
import torch

from .frequency import ExactFrequency


class ExpectedCountLogQ:
    """``log_q(ids, memory_entries=M)`` -> [C] float32 log E[n_j]; ``frequency`` is training
    counts (an array: exact frequencies) or an estimator with ``update`` / ``prob``."""

    def __init__(self, frequency, global_batch: int, in_batch: bool, sampler) -> None:
        if isinstance(frequency, (np.ndarray, torch.Tensor, list, tuple)):
            frequency = ExactFrequency(frequency)
        self.frequency = frequency
        self.global_batch = global_batch if in_batch else 0
        self.sampler = sampler

    @property
    def freq(self) -> torch.Tensor:  # exact frequencies (compatibility)
        return self.frequency.freq

    def observe(self, ids: torch.Tensor, step: int) -> None:
        """This step's gathered global-batch positives (the streaming estimator learns them)."""
        self.frequency.update(ids, step)

    def expected_count(self, ids: torch.Tensor, memory_entries: int = 0) -> torch.Tensor:
        n = self.global_batch + int(memory_entries)
        expected = (n * self.frequency.prob(ids) if n
                    else torch.zeros(ids.shape, dtype=torch.float64, device=ids.device))
        if self.sampler is not None:
            expected = expected + self.sampler.expected_count(ids)
        return expected

    def __call__(self, ids: torch.Tensor, memory_entries: int = 0) -> torch.Tensor:
        """[C] candidate ids -> [C] float32 log expected count."""
        return self.expected_count(ids, memory_entries).clamp_min(1e-30).log().float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.frequency.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.frequency.load_state_dict(state)
