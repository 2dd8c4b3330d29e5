"""Cross-batch memory: a FIFO ring buffer of the last Q global in-batch positives (detached item
vectors and ids) of earlier steps, with the step each entry was written at.

It is filled from the all-gathered positives, which are bitwise identical on every rank, so the
memory is identical on every rank without any collective of its own. Entries are read before
the current step's positives are pushed, so every entry read at step t has age t − s ≥ 1;
entries older than ``max_age`` steps (``max_age`` > 0) are not returned.
"""

from __future__ import annotations

import torch


class CrossBatchMemory:
    def __init__(self, size: int, dim: int | None = None, max_age: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if size <= 0:
            raise ValueError(f"memory size must be > 0, got {size}")
        if max_age < 0:
            raise ValueError(f"memory max_age must be >= 0, got {max_age}")
        self.size, self.max_age = int(size), int(max_age)
        self.ptr, self.filled = 0, 0  # next slot to write; slots [0, filled) hold entries
        self.vectors: torch.Tensor | None = None
        self.ids = torch.full((self.size,), -1, dtype=torch.int64, device=device)
        self.stamps = torch.full((self.size,), -1, dtype=torch.int64, device=device)
        if dim is not None:
            self.vectors = torch.zeros(self.size, dim, dtype=dtype, device=device)

    # ------------------------------------------------------------------ read / write

    def live(self, step: int) -> torch.Tensor:
        """[filled] bool: the entries a step ``step`` may use (not older than max_age)."""
        stamps = self.stamps[: self.filled]
        if self.max_age == 0:
            return torch.ones_like(stamps, dtype=torch.bool)
        return stamps >= step - self.max_age

    def read(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The live entries at step ``step``: (vectors [n, d] detached, ids [n], stamps [n]).
        The tensors may be views of the buffer: copy them (``torch.cat`` does) before the next
        ``push``."""
        if self.vectors is None or self.filled == 0:
            empty = self.ids[:0]
            d = 0 if self.vectors is None else self.vectors.shape[1]
            return self.ids.new_zeros((0, d), dtype=torch.float32), empty, empty
        n = self.filled
        if self.max_age == 0:
            return self.vectors[:n], self.ids[:n], self.stamps[:n]
        keep = self.live(step)
        if bool(keep.all()):
            return self.vectors[:n], self.ids[:n], self.stamps[:n]
        idx = keep.nonzero().squeeze(1)
        return self.vectors[idx], self.ids[idx], self.stamps[idx]

    @torch.no_grad()
    def push(self, vectors: torch.Tensor, ids: torch.Tensor, step: int) -> None:
        """Append the [G, d] vectors (stored detached) and [G] ids of step ``step``, overwriting
        the oldest entries; with G > Q only the last Q are kept."""
        vectors, ids = vectors.detach(), ids.detach()
        if self.vectors is None:
            self.vectors = torch.zeros(self.size, vectors.shape[1], dtype=vectors.dtype,
                                       device=vectors.device)
        if vectors.shape[0] > self.size:
            vectors, ids = vectors[-self.size:], ids[-self.size:]
        g = vectors.shape[0]
        first = min(g, self.size - self.ptr)
        for lo, hi, src in ((self.ptr, self.ptr + first, slice(0, first)),
                            (0, g - first, slice(first, g))):
            if hi > lo:
                self.vectors[lo:hi] = vectors[src].to(self.vectors.device, self.vectors.dtype)
                self.ids[lo:hi] = ids[src].to(self.ids.device)
                self.stamps[lo:hi] = step
        self.ptr = (self.ptr + g) % self.size
        self.filled = min(self.filled + g, self.size)

    def ages(self, step: int) -> torch.Tensor:
        """[filled] int64: step − stamp of every stored entry (live or not)."""
        return step - self.stamps[: self.filled]

    # ------------------------------------------------------------------ checkpoint

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors (fixed shapes once the vector width is known)."""
        vectors = self.vectors if self.vectors is not None else torch.zeros(self.size, 0)
        return {"vectors": vectors, "ids": self.ids, "stamps": self.stamps,
                "ptr": torch.tensor(self.ptr), "filled": torch.tensor(self.filled)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["ids"].shape != (self.size,):
            raise ValueError(f"memory state has {state['ids'].shape[0]} slots, expected "
                             f"{self.size} (negatives.memory_size changed?)")
        device = self.ids.device
        vec = state["vectors"]
        if vec.shape[1] > 0:
            dtype = self.vectors.dtype if self.vectors is not None else vec.dtype
            self.vectors = vec.to(device=device, dtype=dtype).clone()
        self.ids = state["ids"].to(device).clone()
        self.stamps = state["stamps"].to(device).clone()
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])
