"""Tests of the streaming loader (ParquetBatches), make_batches and Batch.to_kjt."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from dsl_torchrec.data import InteractionData, synth
from dsl_torchrec.data.loader import Batch, EpochBatches, ParquetBatches, make_batches

NUM_ITEMS = 150


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> InteractionData:
    out = tmp_path_factory.mktemp("loader") / "ds"
    # Small row groups of uneven size (one per synth chunk and split, at most 97 rows each).
    synth(240, NUM_ITEMS, 4000, out, seed=2, chunk_rows=700, row_group_size=97)
    data = InteractionData(out)
    assert pq.ParquetFile(data.split_path("train")).metadata.num_row_groups >= 10
    return data


def keys(batches: list[Batch]) -> torch.Tensor:
    return torch.cat([b.users * NUM_ITEMS + b.items for b in batches])


def same(a: list[Batch], b: list[Batch]) -> bool:
    return len(a) == len(b) and all(torch.equal(x.users, y.users) and torch.equal(x.items, y.items)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize(("batch_size", "buffer"), [(16, 100), (7, 50), (32, 10_000)])
def test_resume_reproduces_the_rest_of_the_epoch_on_two_ranks(ds: InteractionData,
                                                              batch_size: int,
                                                              buffer: int) -> None:
    ranks = [ParquetBatches(ds, batch_size, r, 2, seed=5, shuffle_buffer=buffer)
             for r in range(2)]
    steps = ranks[0].steps_per_epoch()
    assert steps == ranks[1].steps_per_epoch() == ds.rows("train") // (2 * batch_size)
    for epoch in (1, 2):
        full = [list(r.epoch(epoch)) for r in ranks]
        assert [len(f) for f in full] == [steps, steps]
        assert all(b.users.shape == (batch_size,) for f in full for b in f)
        for r, loader in enumerate(ranks):
            for k in sorted({1, 3, steps // 2, steps - 1}):
                # Stop after k batches (the iterator is simply dropped), then resume.
                it = loader.epoch(epoch)
                head = [next(it) for _ in range(k)]
                del it
                state = json.loads(json.dumps(loader.state(epoch, k)))  # survives a checkpoint
                fresh = ParquetBatches(ds, batch_size, r, 2, seed=5, shuffle_buffer=buffer)
                assert same(head + list(fresh.resume(state)), full[r])
                assert same(list(loader.epoch(epoch, start_step=k)), full[r][k:])


def test_ranks_are_disjoint_and_cover_the_split(ds: InteractionData) -> None:
    B, W = 16, 2
    ranks = [ParquetBatches(ds, B, r, W, seed=1, shuffle_buffer=120) for r in range(W)]
    u, i = ds.split("train")
    split_keys = set((u * NUM_ITEMS + i).tolist())
    n = len(split_keys)
    assert n == ds.rows("train")  # canonical splits have no duplicate pairs
    dropped_tail = n - W * B * ranks[0].steps_per_epoch()
    assert 0 <= dropped_tail < W * B
    seen_per_epoch = []
    for epoch in (1, 2):
        per_rank = [set(keys(list(r.epoch(epoch))).tolist()) for r in ranks]
        assert all(len(s) == B * ranks[0].steps_per_epoch() for s in per_rank)  # no repeats
        assert not per_rank[0] & per_rank[1]  # disjoint
        union = per_rank[0] | per_rank[1]
        # The union is the split minus the dropped tail (the N - W·S rows at the end of the
        # epoch's row-group order).
        assert union <= split_keys and len(split_keys - union) == dropped_tail
        seen_per_epoch.append(per_rank)
    # Row groups are re-dealt every epoch: rank 0 does not get the same rows again.
    assert seen_per_epoch[0][0] != seen_per_epoch[1][0]
    # Every rank reads only (about) its own slice of row groups.
    max_group = max(pq.ParquetFile(ds.split_path("train")).metadata.row_group(g).num_rows
                    for g in range(pq.ParquetFile(ds.split_path("train")).metadata.num_row_groups))
    fresh = ParquetBatches(ds, B, 0, W, seed=1, shuffle_buffer=120)
    list(fresh.epoch(1))
    assert fresh.rows_read <= fresh.rows_per_rank + 2 * max_group < n


def test_shuffle_is_seeded_and_new_every_epoch(ds: InteractionData) -> None:
    a = ParquetBatches(ds, 16, 0, 1, seed=3, shuffle_buffer=200)
    b = ParquetBatches(ds.directory, 16, 0, 1, seed=3, shuffle_buffer=200)  # from a directory
    c = ParquetBatches(ds.split_path("train"), 16, 0, 1, seed=4, shuffle_buffer=200)  # a file
    e1 = list(a.epoch(1))
    assert same(e1, list(b.epoch(1)))
    assert not same(e1, list(a.epoch(2)))
    assert not same(e1, list(c.epoch(1)))
    # Within a window rows are well mixed: consecutive rows are not the file order.
    first = e1[0].users
    assert not torch.all(first[1:] >= first[:-1])


def test_resume_refuses_a_different_setup(ds: InteractionData) -> None:
    one = ParquetBatches(ds, 16, 0, 2, seed=3, shuffle_buffer=100)
    state = one.state(1, 4)
    assert state["window"] == 0 and state["window_offset"] == 64
    assert set(state["row_group_cursor"]) == {"index", "row_group", "offset"}
    other = ParquetBatches(ds, 16, 0, 4, seed=3, shuffle_buffer=100)
    with pytest.raises(ValueError, match="world_size=2 but this loader has world_size=4"):
        other.resume(state)
    e = EpochBatches(*ds.split("train"), 16, 0, 2, 3)
    with pytest.raises(ValueError, match="recorded by 'ParquetBatches'"):
        e.resume(state)


def test_epoch_batches_state_and_resume(ds: InteractionData) -> None:
    e = EpochBatches(*ds.split("train"), 16, 1, 2, seed=3)
    full = list(e.epoch(2))
    assert same(list(e.resume(e.state(2, 5))), full[5:])


def test_too_small_split(ds: InteractionData) -> None:
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ParquetBatches(ds, ds.rows("train"), 0, 2, seed=0)
    with pytest.raises(ValueError, match="rank 2 not in"):
        ParquetBatches(ds, 4, 2, 2, seed=0)


def test_make_batches_picks_by_budget(ds: InteractionData) -> None:
    small = make_batches(ds, "train", 16, 0, 2, 7)
    assert isinstance(small, EpochBatches)
    big = make_batches(ds, "train", 16, 0, 2, 7, memory_budget_rows=500)
    assert isinstance(big, ParquetBatches) and big.shuffle_buffer == 250
    for loader in (small, big):  # the same interface
        assert loader.global_batch == 32
        assert loader.steps_per_epoch() == ds.rows("train") // 32
        batch = next(iter(loader.epoch(1, start_step=2)))
        assert batch.users.dtype == torch.int64 and batch.items.shape == (16,)


def test_to_kjt() -> None:
    b = Batch(torch.tensor([3, 1]), torch.tensor([7, 9]))
    kjt = b.to_kjt()
    assert kjt.keys() == ["user_id", "item_id"]
    assert kjt["user_id"].values().tolist() == [3, 1]
    assert kjt["item_id"].values().tolist() == [7, 9]
    assert kjt["item_id"].lengths().tolist() == [1, 1]


def test_loader_module_doc_matches_steps(tmp_path: Path, ds: InteractionData) -> None:
    # steps_per_epoch comes from the parquet metadata alone (no rows read).
    loader = ParquetBatches(ds, 10, 1, 3, seed=0)
    assert loader.rows_read == 0
    assert loader.steps_per_epoch() == ds.rows("train") // 30
