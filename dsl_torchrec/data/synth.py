"""Synthetic catalogue with power-law popularity and planted low-rank (cluster) structure.

Generative model:

- every item has a latent cluster (uniform over K) and a Zipf popularity weight
  ``(rank + 1) ** -zipf_a`` over a random popularity ranking;
- every user mixes a few clusters (drawn by cluster mass) with Dirichlet weights and wants
  n_u ~ lognormal interactions (mean interactions / users, at least ``min_per_user``);
- each draw picks a cluster from the user's mixture and an item in it proportional to its
  popularity (inverse CDF: ``searchsorted`` on the cumulative weights of the items ordered by
  cluster), or, with probability ``noise``, an item from global popularity;
- a user's first n_u distinct items are kept (users short of distinct items after the first
  1.5 x n_u draws get more rounds, the last ones half from global popularity), then split at
  random into test / valid / train
  (every user keeps >= 1 train item; test gets >= 1 whenever the user has >= 2 items);
- with ``timestamps``, each user becomes active at a uniform time in the first half of
  [time_start, time_start + time_span) and their interactions get sorted uniform times after
  that, train first, then valid, then test, so the test split is also the leave-last temporal
  one (``dsl-data split --protocol temporal`` on the union gives the same test rows).

A user x cluster factorisation explains the data, so a matrix-factorisation model beats
popularity by a wide margin. Work is O(interactions): users are generated in chunks of about
``chunk_rows`` draws, each with its own seeded stream, and appended to the split files as they
come, so memory is bounded by the catalogue arrays (~40 bytes / item) plus one chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from .errors import DataError
from .manifest import Manifest
from .prepare import DatasetWriter

# Independent seed streams, so the catalogue does not depend on the user-side parameters.
_CATALOG_STREAM = 0
_USER_STREAM = 1
_OVERSAMPLE = 1.5  # draws per wanted interaction, to make up for duplicates
_TOP_UP_ROUNDS = 6


@dataclass(frozen=True)
class SynthParams:
    """Knobs of the generator (recorded in the manifest's ``created_by.params``)."""

    users: int
    items: int
    interactions: int
    seed: int = 0
    clusters: int = 64
    clusters_per_user: int = 3
    dirichlet_alpha: float = 1.0
    # Rank exponent. 0.8 gives top-1% / top-10% item shares of ~0.3 / ~0.6 of draws at 2e4 to
    # 1e7 items, like industrial logs; 1.1 puts ~70-85% of all draws on the top 1% of items.
    zipf_a: float = 0.8
    noise: float = 0.05
    count_sigma: float = 0.7
    min_per_user: int = 3
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    chunk_rows: int = 1_000_000
    timestamps: bool = False
    time_start: int = 1_600_000_000  # unix seconds (2020-09-13)
    time_span: int = 365 * 86_400

    def validate(self, out: Path) -> None:
        def bad(name: str, expected: str) -> DataError:
            return DataError(out, f"bad synth parameter {name}={getattr(self, name)!r}",
                             field=name, expected=expected)

        for name in ("users", "items", "interactions", "clusters", "clusters_per_user",
                     "chunk_rows"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        if self.min_per_user < 3:
            raise bad("min_per_user", ">= 3, so every user has train and test items")
        if self.items < self.min_per_user:
            raise bad("items", f">= min_per_user = {self.min_per_user}")
        for name in ("noise", "test_fraction", "valid_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, "in [0, 1)")
        if self.test_fraction + self.valid_fraction >= 1:
            raise bad("valid_fraction", "test_fraction + valid_fraction < 1")
        for name in ("zipf_a", "count_sigma"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if self.dirichlet_alpha <= 0:
            raise bad("dirichlet_alpha", "> 0")
        if self.time_span < 1:
            raise bad("time_span", ">= 1 second")


@dataclass
class Catalog:
    """Item side of the generator.

    cluster int32 [I]: each item's cluster; weight float64 [I]: popularity, sums to 1;
    order int64 [I]: item ids sorted by cluster; cum float64 [I]: cumulative weight along
    ``order``; bounds int64 [K + 1]: cluster k is ``order[bounds[k]:bounds[k + 1]]``;
    mass float64 [K]: total weight of each cluster; below float64 [K]: weight of the
    clusters before it along ``order``.
    """

    cluster: np.ndarray
    weight: np.ndarray
    order: np.ndarray
    cum: np.ndarray
    bounds: np.ndarray
    mass: np.ndarray
    below: np.ndarray

    @property
    def num_clusters(self) -> int:
        return int(self.mass.size)


def make_catalog(items: int, clusters: int, zipf_a: float, seed: int) -> Catalog:
    """The deterministic item side for (items, clusters, zipf_a, seed), as ``synth`` uses it."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_CATALOG_STREAM,)))
    k = min(clusters, items)
    cluster = rng.integers(0, k, size=items, dtype=np.int32)
    weight = np.empty(items, dtype=np.float64)
    weight[rng.permutation(items)] = np.arange(1, items + 1, dtype=np.float64) ** -zipf_a
    weight /= weight.sum()
    order = np.argsort(cluster, kind="stable").astype(np.int64)
    cum = np.cumsum(weight[order])
    bounds = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(cluster, minlength=k), out=bounds[1:])
    mass = np.bincount(cluster, weights=weight, minlength=k)
    below = np.concatenate([[0.0], cum])[bounds[:-1]]
    return Catalog(cluster=cluster, weight=weight, order=order, cum=cum, bounds=bounds, mass=mass,
                   below=below)


def _draw_items(cat: Catalog, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of ``clusters`` (int [M], -1 = global popularity): int64 [M]."""
    r = rng.random(clusters.size)
    glob = clusters < 0
    c = np.where(glob, 0, clusters)
    target = np.where(glob, r * cat.cum[-1], cat.below[c] + r * cat.mass[c])
    pos = np.searchsorted(cat.cum, target, side="right")
    # Float round-off can step just outside the cluster's range; clamp back into it.
    lo = np.where(glob, 0, cat.bounds[c])
    hi = np.where(glob, cat.cum.size, cat.bounds[c + 1]) - 1
    return cat.order[np.clip(pos, lo, hi)]


def _keep_first(user: np.ndarray, item: np.ndarray, want: np.ndarray,
                n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's first ``want[u]`` distinct items, in draw order.

    ``user`` must be grouped (non-decreasing); returns grouped (user, item) int64 [n].
    """
    _, first = np.unique(user * n_items + item, return_index=True)
    keep = np.sort(first)
    user, item = user[keep], item[keep]
    per_user = np.bincount(user, minlength=want.size)
    rank = np.arange(user.size) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    keep = rank < want[user]
    return user[keep], item[keep]


def _user_chunk(p: SynthParams, cat: Catalog, n_users: int,
                rng: np.random.Generator) -> dict[str, tuple[np.ndarray, ...]]:
    """Interactions of ``n_users`` users with local ids 0..n_users-1, split and sorted:
    split -> (users, items[, timestamps]) int64 [n] each."""
    mean = p.interactions / p.users
    sigma = p.count_sigma
    want = np.rint(mean * rng.lognormal(-sigma * sigma / 2, sigma, size=n_users))
    want = np.clip(want, p.min_per_user, p.items).astype(np.int64)
    user_clusters = rng.choice(cat.num_clusters, size=(n_users, p.clusters_per_user), p=cat.mass)
    mix = np.cumsum(rng.dirichlet(np.full(p.clusters_per_user, p.dirichlet_alpha), n_users), 1)

    def draw(n_draws: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
        user = np.repeat(np.arange(n_users, dtype=np.int64), n_draws)
        slot = (rng.random(user.size)[:, None] >= mix[user]).sum(axis=1)
        cluster = user_clusters[user, np.minimum(slot, p.clusters_per_user - 1)]
        cluster[rng.random(user.size) < noise] = -1
        return user, _draw_items(cat, cluster, rng)

    user, item = _keep_first(*draw(np.ceil(want * _OVERSAMPLE).astype(np.int64) + 2, p.noise),
                             want, p.items)
    # Users in small or very skewed clusters run out of new items; top them up, mixing in
    # global popularity in the last rounds so that even they reach their count.
    for round_ in range(_TOP_UP_ROUNDS):
        short = want - np.bincount(user, minlength=n_users)
        if not short.any():
            break
        noise = p.noise if round_ < _TOP_UP_ROUNDS // 2 else max(p.noise, 0.5)
        extra_user, extra_item = draw(np.where(short > 0, 3 * short + 2, 0), noise)
        user, item = np.concatenate([user, extra_user]), np.concatenate([item, extra_item])
        grouped = np.argsort(user, kind="stable")  # earlier draws stay first within a user
        user, item = _keep_first(user[grouped], item[grouped], want, p.items)
    have = np.bincount(user, minlength=n_users)

    # First-seen order favours popular items; shuffle within each user before splitting.
    shuffled = np.lexsort((rng.random(user.size), user))
    user, item = user[shuffled], item[shuffled]
    rank = np.arange(user.size) - np.repeat(np.cumsum(have) - have, have)
    n_test = np.floor(p.test_fraction * have + 0.5).astype(np.int64)
    if p.test_fraction > 0:
        n_test = np.maximum(n_test, (have >= 2).astype(np.int64))
    n_test = np.minimum(n_test, have - 1)
    n_valid = np.floor(p.valid_fraction * have + 0.5).astype(np.int64)
    n_valid = np.clip(n_valid, 0, have - 1 - n_test)
    r_test, r_valid = n_test[user], (n_test + n_valid)[user]
    ts = None
    if p.timestamps:
        # Sorted uniform times per user after a uniform start; rank 0 (test) is the latest.
        start = p.time_start + rng.integers(0, max(1, p.time_span // 2), size=n_users)
        length = p.time_start + p.time_span - start
        frac = rng.random(user.size)
        frac = frac[np.lexsort((frac, user))]  # ascending within each user's (contiguous) rows
        first = np.repeat(np.cumsum(have) - have, have)
        chrono = first + (have[user] - 1 - rank)  # position of this row in time order
        ts = start[user] + (frac[chrono] * length[user]).astype(np.int64)
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for split, mask in (("train", rank >= r_valid), ("valid", (rank >= r_test) & (rank < r_valid)),
                        ("test", rank < r_test)):
        key = user[mask] * p.items + item[mask]
        if ts is None:
            key = np.sort(key)
            out[split] = (key // p.items, key % p.items)
        else:
            order = np.argsort(key)
            key = key[order]
            out[split] = (key // p.items, key % p.items, ts[mask][order])
    return out


def synth(
    users: int,
    items: int,
    interactions: int,
    out: str | PathLike[str],
    seed: int = 0,
    *,
    overwrite: bool = False,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
    **knobs: float | int,
) -> Manifest:
    """Generate a synthetic dataset directory at ``out`` (see the module docstring).

    ``knobs`` are the other ``SynthParams`` fields (clusters, zipf_a, noise, test_fraction,
    valid_fraction, ...). num_users = users and num_items = items (the catalogue, including
    items nobody drew). Deterministic given all parameters.
    """
    out = Path(out)
    row_group_size = int(knobs.pop("row_group_size", 0)) or None
    unknown = set(knobs) - set(SynthParams.__dataclass_fields__)
    if unknown:
        raise DataError(out, f"unknown synth parameter(s) {sorted(unknown)}",
                        expected="fields of SynthParams")
    p = SynthParams(users=users, items=items, interactions=interactions, seed=seed, **knobs)
    p.validate(out)
    started = time.perf_counter()
    kw = {} if row_group_size is None else {"row_group_size": row_group_size}
    with DatasetWriter(out, overwrite=overwrite, **kw) as writer:
        cat = make_catalog(p.items, p.clusters, p.zipf_a, p.seed)
        mean = p.interactions / p.users
        chunk_users = max(1, int(p.chunk_rows / max(mean, p.min_per_user)))
        n_chunks = math.ceil(p.users / chunk_users)
        for c in range(n_chunks):
            rng = np.random.default_rng(np.random.SeedSequence(p.seed, spawn_key=(_USER_STREAM, c)))
            lo = c * chunk_users
            n = min(chunk_users, p.users - lo)
            for split, (u, i, *t) in _user_chunk(p, cat, n, rng).items():
                writer.append(split, u + lo, i, t[0] if t else None)
            if progress is not None and (n_chunks <= 20 or (c + 1) % max(1, n_chunks // 20) == 0
                                         or c + 1 == n_chunks):
                rows = sum(writer.rows(s) for s in ("train", "valid", "test"))
                progress(f"synth: {lo + n:,}/{p.users:,} users, {rows:,} interactions, "
                         f"{time.perf_counter() - started:.1f}s")
        created_by = {
            "command": "synth",
            "seed": p.seed,
            "params": asdict(p),
            "generator": "zipf popularity x user cluster mixtures (dsl_torchrec.data.synth)",
        }
        return writer.finish(name or out.name, p.users, p.items, created_by)
