"""Per-rank training batches.

Two loaders with one interface (``global_batch``, ``steps_per_epoch()``, ``epoch(epoch,
start_step=0) -> Iterator[Batch]``, ``state(epoch, step)`` / ``resume(state)``), and
``make_batches`` to pick one:

``EpochBatches`` (first version): the split in memory, one seeded global permutation per epoch
(identical on every rank), each global batch of W·B rows cut into W equal slices, the tail
dropped so every rank takes the same number of steps. Rank r's batch t is rows
[t·W·B + r·B, t·W·B + (r+1)·B) of the epoch's permutation, so W ranks together see exactly the
batches one process with batch W·B would see.

``ParquetBatches`` (streaming, for splits larger than memory): every epoch, the split's row
groups are put in a seeded random order (the same on every rank) and read as one virtual
sequence of N rows; rank r owns rows [r·S, (r+1)·S) of it, S = steps·B with steps = N // (W·B),
so every rank yields the same number of batches (computed from the parquet metadata alone), the
ranks' rows are disjoint, and the N - W·S rows at the end of the sequence are dropped (other
rows every epoch). A rank reads only the row groups that overlap its range (a boundary group is
read by both neighbours, each keeping its part). Its rows pass through a shuffle buffer of
``shuffle_buffer`` rows: the range is cut into consecutive windows of that many rows, each
window is permuted with its own seed (seed, epoch, rank, window), and batches are consecutive B
rows of the permuted windows. Because a window's content and permutation depend only on
(seed, epoch, rank, window), a run resumed at step k rebuilds the one window holding row k·B and
continues with exactly the batches an uninterrupted run would see; ``state(epoch, step)``
records that position (epoch, window, row-group cursor, window seed). Memory: one window and
one cached row group, about 16 bytes × (shuffle_buffer + largest row group) for the two id
columns, and ~24 bytes × shuffle_buffer while a window is built (its permutation + the ids). With W ranks it does not reproduce one process with W·B (each rank shuffles its own
range); the union of the ranks' batches is still every kept row once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

DEFAULT_MEMORY_BUDGET_ROWS = 1 << 25  # ~0.8 GB for EpochBatches (ids + permutation)
DEFAULT_SHUFFLE_BUFFER = 1 << 22  # rows per ParquetBatches window (~64 MB for the ids)


@dataclass
class Batch:
    users: torch.Tensor  # [B] int64
    items: torch.Tensor  # [B] int64

    def to_kjt(self, user_feature: str = "user_id", item_feature: str = "item_id"):
        """The batch as one KeyedJaggedTensor: keys (user_feature, item_feature), B bags of
        one id each per key (the layout of ``model.towers.one_id_per_row``)."""
        from torchrec import KeyedJaggedTensor

        n = self.users.numel()
        return KeyedJaggedTensor.from_lengths_sync(
            keys=[user_feature, item_feature],
            values=torch.cat([self.users.long(), self.items.long()]),
            lengths=torch.ones(2 * n, dtype=torch.int32, device=self.users.device),
        )


def _too_small(rows: int, batch_size: int, world_size: int) -> ValueError:
    return ValueError(
        f"train split has {rows} rows, fewer than one global batch "
        f"(train.batch_size={batch_size} × {world_size} ranks); lower train.batch_size")


def _check_state(loader: Any, state: dict[str, Any], keys: tuple[str, ...]) -> None:
    if state.get("loader") != type(loader).__name__:
        raise ValueError(f"state was recorded by {state.get('loader')!r}, "
                         f"not {type(loader).__name__}")
    for key in keys:
        mine = loader._state_base()[key]
        if state.get(key) != mine:
            raise ValueError(f"cannot resume: state has {key}={state.get(key)!r} but this "
                             f"loader has {key}={mine!r}; resume with the same data, batch "
                             "size, world size, rank, seed and shuffle buffer")


class EpochBatches:
    def __init__(self, users: np.ndarray, items: np.ndarray, batch_size: int, rank: int,
                 world_size: int, seed: int) -> None:
        if len(users) < batch_size * world_size:
            raise _too_small(len(users), batch_size, world_size)
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

    def _state_base(self) -> dict[str, Any]:
        return {"loader": type(self).__name__, "num_rows": len(self.users),
                "batch_size": self.batch_size, "rank": self.rank,
                "world_size": self.world_size, "seed": self.seed}

    def state(self, epoch: int, step: int) -> dict[str, Any]:
        """Position after ``step`` batches of ``epoch`` (JSON-serialisable)."""
        return {**self._state_base(), "epoch": int(epoch), "step": int(step)}

    def resume(self, state: dict[str, Any]) -> Iterator[Batch]:
        """The remaining batches of the epoch ``state`` was recorded in."""
        _check_state(self, state, ("num_rows", "batch_size", "rank", "world_size", "seed"))
        return self.epoch(state["epoch"], state["step"])


def _seed_words(*words: int) -> list[int]:
    return [int(w) & 0xFFFF_FFFF_FFFF_FFFF for w in words]


class ParquetBatches:
    """Streaming per-rank batches from a split's parquet file (see the module docstring).

    ``source``: a dataset directory, an ``InteractionData`` (``split`` names the split) or a
    parquet file with int64 ``user_id`` / ``item_id`` columns.
    """

    _WINDOW_STREAM = 1

    def __init__(self, source: Any, batch_size: int, rank: int, world_size: int, seed: int,
                 *, split: str = "train", shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, world_size={world_size})")
        self.path = _split_file(source, split)
        self.pf = pq.ParquetFile(self.path)
        meta = self.pf.metadata
        self.group_rows = np.array([meta.row_group(g).num_rows for g in range(meta.num_row_groups)],
                                   dtype=np.int64)
        self.num_rows = int(self.group_rows.sum())
        if self.num_rows < batch_size * world_size:
            raise _too_small(self.num_rows, batch_size, world_size)
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.shuffle_buffer = max(int(shuffle_buffer), batch_size)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self.rows_read = 0  # rows decoded from parquet so far (for tests / diagnostics)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def steps_per_epoch(self) -> int:
        return self.num_rows // self.global_batch

    @property
    def rows_per_rank(self) -> int:
        return self.steps_per_epoch() * self.batch_size

    def num_windows(self) -> int:
        return -(-self.rows_per_rank // self.shuffle_buffer)

    def group_order(self, epoch: int) -> np.ndarray:
        """The epoch's row-group order (identical on every rank): int64 [G]."""
        rng = np.random.default_rng(_seed_words(self.seed, epoch, 0))
        return rng.permutation(self.group_rows.size)

    def rank_range(self, rank: int | None = None) -> tuple[int, int]:
        """[lo, hi) of ``rank``'s rows in the epoch's virtual row sequence."""
        r = self.rank if rank is None else rank
        return r * self.rows_per_rank, (r + 1) * self.rows_per_rank

    def _group(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != g:
            t = self.pf.read_row_group(int(g), columns=["user_id", "item_id"])
            u = t.column("user_id").to_numpy().astype(np.int64, copy=False)
            i = t.column("item_id").to_numpy().astype(np.int64, copy=False)
            self.rows_read += u.size
            self._cache = (int(g), u, i)
        return self._cache[1], self._cache[2]

    def _pieces(self, order: np.ndarray, lo: int,
                hi: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Rows [lo, hi) of the virtual sequence of row groups in ``order``, as (users, items)
        views of one row group at a time."""
        starts = np.concatenate([[0], np.cumsum(self.group_rows[order])])
        k = int(np.searchsorted(starts, lo, side="right")) - 1
        while k < order.size and starts[k] < hi:
            u, i = self._group(order[k])
            a, b = max(lo, starts[k]) - starts[k], min(hi, starts[k + 1]) - starts[k]
            yield u[a:b], i[a:b]
            k += 1

    def _window_seed(self, epoch: int, window: int) -> list[int]:
        return _seed_words(self.seed, epoch, self._WINDOW_STREAM, self.rank, window)

    def _window(self, epoch: int, order: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``j`` of this rank in the epoch, shuffled: row k of the window goes to
        position dest[k] of a seeded random permutation ``dest`` (scattered piece by piece, so
        the unshuffled window is never held whole)."""
        lo, hi = self.rank_range()
        a = lo + j * self.shuffle_buffer
        b = min(a + self.shuffle_buffer, hi)
        dest = np.random.default_rng(self._window_seed(epoch, j)).permutation(b - a)
        out_u, out_i = np.empty(b - a, np.int64), np.empty(b - a, np.int64)
        filled = 0
        for u, i in self._pieces(order, a, b):
            d = dest[filled:filled + u.size]
            out_u[d], out_i[d] = u, i
            filled += u.size
        pa.default_memory_pool().release_unused()  # decoded row groups: hand pages back
        return out_u, out_i

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        steps, B = self.steps_per_epoch(), self.batch_size
        if start_step >= steps:
            return
        order = self.group_order(epoch)
        j, pos = divmod(start_step * B, self.shuffle_buffer)
        u, i = self._window(epoch, order, j)
        for _ in range(start_step, steps):
            if u.size - pos >= B:
                bu, bi = u[pos:pos + B], i[pos:pos + B]
                pos += B
            else:  # the batch spans windows: copy the tail out, free the window, read the next
                parts_u, parts_i = [u[pos:].copy()], [i[pos:].copy()]
                have = parts_u[0].size
                u = i = bu = bi = None
                while have < B:
                    j += 1
                    u, i = self._window(epoch, order, j)
                    pos = min(B - have, u.size)
                    parts_u.append(u[:pos])
                    parts_i.append(i[:pos])
                    have += pos
                bu, bi = np.concatenate(parts_u), np.concatenate(parts_i)
            yield Batch(torch.from_numpy(bu), torch.from_numpy(bi))
        self._cache = None

    def _state_base(self) -> dict[str, Any]:
        return {"loader": type(self).__name__, "num_rows": self.num_rows,
                "num_row_groups": int(self.group_rows.size), "batch_size": self.batch_size,
                "rank": self.rank, "world_size": self.world_size, "seed": self.seed,
                "shuffle_buffer": self.shuffle_buffer}

    def state(self, epoch: int, step: int) -> dict[str, Any]:
        """Position after ``step`` batches of ``epoch``: which window, where in it, which row
        group (index in the epoch's order, row group id, offset) holds the next row, and the
        window's seed. JSON-serialisable; ``resume`` continues from it."""
        window, offset = divmod(step * self.batch_size, self.shuffle_buffer)
        order = self.group_order(epoch)
        starts = np.concatenate([[0], np.cumsum(self.group_rows[order])])
        lo = self.rank_range()[0] + window * self.shuffle_buffer
        k = min(int(np.searchsorted(starts, lo, side="right")) - 1, order.size - 1)
        return {**self._state_base(), "epoch": int(epoch), "step": int(step),
                "window": int(window), "window_offset": int(offset),
                "row_group_cursor": {"index": k, "row_group": int(order[k]),
                                     "offset": int(lo - starts[k])},
                "window_seed": self._window_seed(epoch, window)}

    def resume(self, state: dict[str, Any]) -> Iterator[Batch]:
        """The remaining batches of the epoch ``state`` was recorded in."""
        _check_state(self, state, ("num_rows", "num_row_groups", "batch_size", "rank",
                                   "world_size", "seed", "shuffle_buffer"))
        return self.epoch(state["epoch"], state["step"])


def _split_file(source: Any, split: str) -> Path:
    from .dataset import InteractionData

    if isinstance(source, InteractionData):
        return source.split_path(split)
    path = Path(source)
    if path.is_dir():
        return InteractionData(path, require_train=False).split_path(split)
    return path


def make_batches(data: Any, split: str, batch_size: int, rank: int, world_size: int, seed: int,
                 memory_budget_rows: int = DEFAULT_MEMORY_BUDGET_ROWS,
                 shuffle_buffer: int | None = None) -> EpochBatches | ParquetBatches:
    """``EpochBatches`` when ``split`` of ``data`` (an InteractionData) has at most
    ``memory_budget_rows`` rows, else ``ParquetBatches`` (which never holds more than its
    shuffle buffer — by default half the budget — plus a row group)."""
    rows = data.rows(split)
    if rows <= memory_budget_rows:
        users, items = data.split(split)
        return EpochBatches(users, items, batch_size, rank, world_size, seed)
    buffer = shuffle_buffer if shuffle_buffer is not None else max(memory_budget_rows // 2,
                                                                   batch_size)
    return ParquetBatches(data, batch_size, rank, world_size, seed, split=split,
                          shuffle_buffer=buffer)
