"""``dsl-data split``: train / valid / test splits of a dataset directory.

The input is the union of all splits of ``--in`` (an unsplit ``all`` from ``prepare``, or an
already split dataset to re-split); ids, ``num_users`` / ``num_items`` and the vocabularies are
kept. Protocols (``test_fraction`` = F, ``valid_fraction`` = V):

- ``random``: each user with n_u interactions gives round-half-up(F·n_u) of them, drawn at random,
  to test, but always keeps >= 1 train interaction (so users with one interaction have no test).
- ``temporal``: leave-last-N per user by timestamp (ties broken by item id). N is
  ``leave_last`` when given (``--leave-last 1`` = leave-one-out), else
  max(1, round-half-up(F·n_u)) per user; again each user keeps >= 1 train interaction. Needs a
  ``timestamp`` column.
- ``ood-popularity``: the popularity-shift protocol of the PSL benchmark. The test set is drawn
  by repeatedly picking an item uniformly at random among the items that can still give one up,
  then one of its interactions uniformly at random, until round(F·N) interactions are in test;
  every item and every user keeps >= 1 training interaction. The test item distribution is then
  close to uniform (much flatter than train: compare the Gini coefficients in
  ``created_by.counts``). Vectorised: before drawing, one random interaction of every user and
  one of every item is reserved for train; item picks are drawn in rounds of as many picks as
  are still missing, and a pick of an item that has nothing left to give is dropped and drawn
  again next round among the items that still have (rejection sampling, so the picks are
  distributed exactly as the one-at-a-time process; only the reserved rows are fixed up front).

The validation split is carved from what is left of train with the same protocol and V as the
share of *train* (random: per user; temporal: the ``leave_last`` interactions before the test
ones, or max(1, round(V·n_train)) when not given; ood-popularity: round(V·N_train) by the same
item-uniform draw). The manifest's ``created_by`` records protocol, seed, fractions and ``counts`` (rows / users / items per split,
Gini of the item counts, test users or items unseen in train).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import InteractionData
from .errors import DataError
from .manifest import Manifest, sha256_file
from .prepare import ROW_GROUP_SIZE, DatasetWriter

PROTOCOLS = ("random", "temporal", "ood-popularity")


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts [n] (0 = all equal, -> 1 = all on one)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(2.0 * np.dot(np.arange(1, n + 1), x) / (n * total) - (n + 1) / n)


def _group(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows grouped by user: (start of each row's group [n], size of each row's group [n])."""
    n = users.size
    first = np.ones(n, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, n))
    return np.repeat(starts, sizes), np.repeat(sizes, sizes)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def _last_per_user(users: np.ndarray, sort_key: np.ndarray, take: np.ndarray) -> np.ndarray:
    """Mask [n]: for each user, the ``take[row's user]`` rows with the largest ``sort_key``.

    ``take`` is given per row (same value across a user's rows); ties broken by row order.
    """
    n = users.size
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort((np.arange(n), sort_key, users))  # by user, then ascending key
    su = users[order]
    start, size = _group(su)
    pos_from_end = size - 1 - (np.arange(n) - start)
    mask[order[pos_from_end < take[order]]] = True
    return mask


def split_random(users: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Mask [n] of the rows to hold out: per user round-half-up(fraction·n_u), random, keeping
    >= 1 row per user. ``users`` need not be sorted."""
    n = users.size
    counts = np.bincount(users)
    take = np.minimum(_round_half_up(fraction * counts), counts - 1)[users]
    return _last_per_user(users, rng.random(n), take)


def split_temporal(users: np.ndarray, items: np.ndarray, ts: np.ndarray, fraction: float,
                   leave_last: int | None) -> np.ndarray:
    """Mask [n] of each user's last rows by (timestamp, item): ``leave_last`` of them, or
    max(1, round-half-up(fraction·n_u)); every user keeps >= 1 row."""
    counts = np.bincount(users)
    if leave_last is not None:
        take = np.full(counts.size, leave_last, dtype=np.int64)
    else:
        take = np.maximum(_round_half_up(fraction * counts), 1 if fraction > 0 else 0)
    take = np.minimum(take, counts - 1)[users]
    # Sort key (timestamp, item): of equal times, the larger item id counts as later.
    order_key = np.lexsort((items, ts))
    rank = np.empty(users.size, dtype=np.int64)
    rank[order_key] = np.arange(users.size)
    return _last_per_user(users, rank, take)


def split_ood_popularity(users: np.ndarray, items: np.ndarray, n_test: int,
                         rng: np.random.Generator, path: Path | None = None) -> np.ndarray:
    """Mask [n] of ``n_test`` rows drawn item-uniformly (see the module docstring); every user
    and every item keeps >= 1 unmasked row. DataError when that many cannot move."""
    n = users.size
    mask = np.zeros(n, dtype=bool)
    if n_test <= 0:
        return mask
    # Reserve one random row per user and one per item for train.
    noise = rng.random(n)
    reserved = np.zeros(n, dtype=bool)
    for key in (users, items):
        order = np.lexsort((noise, key))
        first = np.ones(n, dtype=bool)
        first[1:] = key[order[1:]] != key[order[:-1]]
        reserved[order[first]] = True
    movable = np.flatnonzero(~reserved)
    cap = np.bincount(items[movable], minlength=int(items.max()) + 1).astype(np.int64)
    if int(cap.sum()) < n_test:
        raise DataError(path or "<data>", f"cannot hold out {n_test:,} of {n:,} interactions "
                        "item-uniformly: only {:,} can move while every user and every item "
                        "keeps a training interaction".format(int(cap.sum())),
                        field="test_fraction",
                        expected=f"a fraction <= {cap.sum() / n:.3f} for this dataset")
    picked = np.zeros(cap.size, dtype=np.int64)
    left = cap.copy()
    eligible = np.flatnonzero(left > 0)
    need = n_test
    while need > 0:
        draws = np.bincount(rng.integers(0, eligible.size, size=need), minlength=eligible.size)
        got = np.minimum(draws, left[eligible])
        picked[eligible] += got
        left[eligible] -= got
        need -= int(got.sum())
        eligible = eligible[left[eligible] > 0]
    # Item i gives up ``picked[i]`` of its movable rows, chosen uniformly at random.
    mi = items[movable]
    order = np.lexsort((rng.random(movable.size), mi))
    start, _ = _group(mi[order])
    rank = np.arange(movable.size) - start
    mask[movable[order[rank < picked[mi[order]]]]] = True
    return mask


def _counts(splits: dict[str, tuple[np.ndarray, ...]], num_users: int,
            num_items: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    present = np.zeros(num_items, dtype=bool)
    for u, i, *_ in splits.values():
        present[i] = True
    train_users = np.bincount(splits["train"][0], minlength=num_users) > 0
    train_items = np.bincount(splits["train"][1], minlength=num_items) > 0
    for name, (u, i, *_) in splits.items():
        ic = np.bincount(i, minlength=num_items)
        entry = {
            "rows": int(u.size),
            "users": int(np.count_nonzero(np.bincount(u, minlength=num_users))),
            "items": int(np.count_nonzero(ic)),
            "gini_item_counts": round(gini(ic[present]), 4),
        }
        if name != "train":
            entry["users_unseen_in_train"] = int(np.count_nonzero(~train_users[np.unique(u)]))
            entry["items_unseen_in_train"] = int(np.count_nonzero(~train_items[np.unique(i)]))
        out[name] = entry
    return out


def split_dataset(
    input: str | PathLike[str],
    out: str | PathLike[str],
    protocol: str,
    *,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.1,
    seed: int = 0,
    leave_last: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    row_group_size: int = ROW_GROUP_SIZE,
) -> Manifest:
    """Split the dataset at ``input`` into train / [valid] / test at ``out`` (module docstring)."""
    input, out = Path(input), Path(out)
    if protocol not in PROTOCOLS:
        raise DataError(input, f"unknown protocol {protocol!r}",
                        expected="one of " + ", ".join(PROTOCOLS))
    if not 0 < test_fraction < 1 and not (protocol == "temporal" and leave_last):
        raise DataError(input, f"test_fraction {test_fraction} out of range",
                        field="test_fraction", expected="0 < test_fraction < 1")
    if not 0 <= valid_fraction < 1:
        raise DataError(input, f"valid_fraction {valid_fraction} out of range",
                        field="valid_fraction", expected="0 <= valid_fraction < 1")
    if leave_last is not None and (protocol != "temporal" or leave_last < 1):
        raise DataError(input, f"leave_last={leave_last}", field="leave_last",
                        expected="an integer >= 1, with --protocol temporal only")
    if input.resolve() == out.resolve():
        raise DataError(out, "output directory is the input directory",
                        expected="a new directory for the split dataset")
    data = InteractionData(input, require_train=False)
    with DatasetWriter(out, overwrite=overwrite, row_group_size=row_group_size) as writer:
        names = data.split_names
        parts = [data.split(s) for s in names]
        users = np.concatenate([p[0] for p in parts])
        items = np.concatenate([p[1] for p in parts])
        has_ts = all(data.has_timestamps(s) for s in names)
        ts = np.concatenate([data.timestamps(s) for s in names]) if has_ts else None
        # Canonical splits are duplicate-free; a pair in two input splits counts once.
        key = users * max(data.num_items, 1) + items
        _, first = np.unique(key, return_index=True)
        duplicates = int(users.size - first.size)
        if duplicates:
            first.sort()
            users, items = users[first], items[first]
            ts = None if ts is None else ts[first]
        if protocol == "temporal" and ts is None:
            raise DataError(data.split_path(names[0]), "no timestamp column",
                            field="timestamp", expected="timestamps for --protocol temporal "
                            "(prepare a log that has them, or synth --timestamps)")
        rng = np.random.default_rng(seed)
        n = users.size

        def hold_out(idx: np.ndarray, fraction: float, leave: int | None) -> np.ndarray:
            """Mask over ``idx`` (rows still in train) of the rows to hold out."""
            u, i = users[idx], items[idx]
            if protocol == "random":
                return split_random(u, fraction, rng)
            if protocol == "temporal":
                return split_temporal(u, i, ts[idx], fraction, leave)
            return split_ood_popularity(u, i, int(round(fraction * idx.size)), rng, input)

        everything = np.arange(n)
        test_mask = hold_out(everything, test_fraction, leave_last)
        train_idx = everything[~test_mask]
        valid_idx = np.zeros(0, dtype=np.int64)
        if valid_fraction > 0:
            vmask = hold_out(train_idx, valid_fraction, leave_last)
            valid_idx, train_idx = train_idx[vmask], train_idx[~vmask]
        test_idx = everything[test_mask]
        if test_idx.size == 0:
            raise DataError(input, f"the {protocol} test split would be empty ({n:,} "
                            "interactions)", field="test_fraction",
                            expected="users with >= 2 interactions and a larger --test-fraction")
        splits: dict[str, tuple[np.ndarray, ...]] = {}
        for split, idx in (("train", train_idx), ("valid", valid_idx), ("test", test_idx)):
            if idx.size == 0:
                continue
            idx = idx[np.lexsort((items[idx], users[idx]))]
            splits[split] = (users[idx], items[idx]) + (() if ts is None else (ts[idx],))
            writer.append(split, *splits[split])
        for vocab in ("users", "items"):
            src = data.manifest.file_path(input, vocab)
            if src is not None:
                writer.copy_file(vocab, src, data.manifest.files[vocab]["rows"])
        counts = _counts(splits, data.num_users, data.num_items)
        created_by = {
            "command": "split",
            "protocol": protocol,
            "seed": seed,
            "test_fraction": test_fraction if not leave_last else None,
            "valid_fraction": valid_fraction,
            "leave_last": leave_last,
            "source": str(input.absolute()),
            "source_name": data.manifest.name,
            "source_splits": names,
            "source_manifest_sha256": sha256_file(input / "manifest.json"),
            "source_created_by": data.manifest.created_by,
            "duplicates_across_input_splits": duplicates,
            "timestamps": ts is not None,
            "counts": counts,
        }
        return writer.finish(name or out.name, data.num_users, data.num_items, created_by)
