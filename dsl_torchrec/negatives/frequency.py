"""Item frequencies for logQ: p_j = probability that one training interaction (one in-batch
positive, one memory entry) is item j.

- ``ExactFrequency``: training counts / total, known up front.
- ``StreamingFrequency``: the online estimate of Yi et al. 2019 ("Sampling-bias-corrected
  neural modeling for large corpus item recommendations", Alg. 2) for logs too large to count up
  front: m hashed arrays A ("step last seen") and B ("average gap in steps between two
  occurrences"), updated from the gathered ids of every global batch, so they are identical on
  every rank with no collective of their own. The gap of bucket h is a running mean for its
  first 1/α occurrences and an exponential moving average with rate α after that (Yi et al. use
  the EMA from the start; the running mean removes the start-up bias of rare items). An
  occurrence rate of 1/δ per step is a per-interaction probability p = 1/(G·δ) for G
  interactions per step. A bucket shared by several items (hash collision) sees the union of
  their occurrences, so its gap is too small: with m arrays the estimate takes the largest gap.
"""

from __future__ import annotations

import numpy as np
import torch

_P = (1 << 31) - 1  # Mersenne prime of the universal hash ((a·x + b) mod P) mod H


class ExactFrequency:
    def __init__(self, counts: np.ndarray | torch.Tensor) -> None:
        c = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
        self.freq = c / c.sum().clamp_min(1.0)
        self._on: dict[torch.device, torch.Tensor] = {}

    def update(self, ids: torch.Tensor, step: int) -> None:
        pass

    def prob(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.device not in self._on:
            self._on[ids.device] = self.freq.to(ids.device)
        return self._on[ids.device][ids]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class StreamingFrequency:
    """Hashed last-seen / average-gap arrays. ``update(ids, step)`` with every global batch's
    ids (G of them, steps increasing); ``prob(ids)`` the current per-interaction estimate."""

    def __init__(self, num_buckets: int, batch_size: int, *, num_hashes: int = 2,
                 lr: float = 0.01, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if num_buckets <= 0 or num_hashes <= 0 or batch_size <= 0:
            raise ValueError("streaming frequency: buckets, hashes and batch size must be > 0")
        if not 0.0 < lr <= 1.0:
            raise ValueError(f"streaming frequency: lr must be in (0, 1], got {lr}")
        self.num_buckets, self.num_hashes = int(num_buckets), int(num_hashes)
        self.batch_size, self.lr = int(batch_size), float(lr)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2019]))
        self.a = torch.as_tensor(rng.integers(1, _P, self.num_hashes), device=device)
        self.b = torch.as_tensor(rng.integers(0, _P, self.num_hashes), device=device)
        size = self.num_hashes * self.num_buckets
        self.last = torch.full((size,), -1, dtype=torch.int64, device=device)  # -1: never seen
        self.gap = torch.zeros(size, dtype=torch.float64, device=device)
        self.seen = torch.zeros(size, dtype=torch.int64, device=device)  # occurrences so far
        # origin = first updated step − 1 (the first gap of a bucket counts from there);
        # step = last updated step
        self.origin, self.step = torch.tensor(-1), torch.tensor(-1)

    def buckets(self, ids: torch.Tensor) -> torch.Tensor:
        """[n] ids -> [m, n] flat bucket indices (array k's buckets are offset by k·H)."""
        x = ids.to(self.a.device).long().remainder(_P)
        h = (x.unsqueeze(0) * self.a.unsqueeze(1) + self.b.unsqueeze(1)).remainder_(_P)
        h.remainder_(self.num_buckets)
        offset = torch.arange(self.num_hashes, device=h.device).unsqueeze(1) * self.num_buckets
        return h + offset

    @torch.no_grad()
    def update(self, ids: torch.Tensor, step: int) -> None:
        if int(self.step) < 0:
            self.origin = torch.tensor(step - 1)
        elif step <= int(self.step):
            raise ValueError(f"streaming frequency: step {step} after step {int(self.step)}")
        uniq, cnt = torch.unique(self.buckets(ids).reshape(-1), return_counts=True)
        last = self.last[uniq]
        prev = torch.where(last >= 0, last, int(self.origin))
        # a step with c occurrences = c occurrences whose gaps are (step − prev) / c each
        x = (step - prev).double() / cnt
        n0 = self.seen[uniq]
        keep = self._keep(n0, cnt)
        self.gap[uniq] = x + keep * (self.gap[uniq] - x)
        self.seen[uniq] = n0 + cnt
        self.last[uniq] = step
        self.step = torch.tensor(step)

    def _keep(self, n0: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Π_{i=n0+1}^{n0+c} (1 − lr_i) with lr_i = max(α, 1/i): what is left of the old mean
        after c sequential updates towards the same value."""
        k = int(1.0 / self.lr)  # lr_i = 1/i while i <= k
        hi = n0 + c
        run = torch.where(n0 + 1 <= k, n0.double() / torch.clamp(hi, max=k).double(),
                          torch.ones_like(n0, dtype=torch.float64))
        ema = (hi - torch.clamp(n0, min=k)).clamp_(min=0)
        return run * torch.pow(1.0 - self.lr, ema.double())

    def gaps(self, ids: torch.Tensor) -> torch.Tensor:
        """[n] ids -> [n] estimated steps between two occurrences (float64); a bucket never seen
        counts as the whole stream so far."""
        h = self.buckets(ids)
        elapsed = float(max(int(self.step) - int(self.origin), 1))
        g = torch.where(self.last[h] >= 0, self.gap[h], elapsed)
        return g.amax(0).clamp_(min=1.0 / self.batch_size)

    def prob(self, ids: torch.Tensor) -> torch.Tensor:
        """[n] ids -> [n] per-interaction probability 1 / (G · gap) (float64)."""
        return (1.0 / (self.batch_size * self.gaps(ids))).to(ids.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"a": self.a, "b": self.b, "last": self.last, "gap": self.gap, "seen": self.seen,
                "origin": self.origin, "step": self.step,
                "batch_size": torch.tensor(self.batch_size)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["last"].shape != self.last.shape:
            raise ValueError("streaming frequency state has a different size "
                             "(negatives.streaming_buckets / streaming_hashes changed?)")
        dev = self.last.device
        for k in ("a", "b", "last", "gap", "seen"):
            setattr(self, k, state[k].to(dev).clone())
        self.origin, self.step = state["origin"].clone(), state["step"].clone()
        # resumed with another global batch G' (world size changed): an item seen every δ
        # steps of G interactions is seen every δ·G/G' steps of G'
        self.gap *= int(state["batch_size"]) / self.batch_size
