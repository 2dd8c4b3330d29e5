"""Read access to a canonical dataset directory (manifest + one parquet file per split)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .errors import DataError
from .manifest import Manifest, check_schema

Pairs = tuple[np.ndarray, np.ndarray]


class InteractionData:
    """A dataset directory opened for reading; split arrays are loaded lazily and cached.

    Opening checks, for every split, that the file is there with the right schema and row
    count, that it is not empty, and that all ids lie in [0, num_users) / [0, num_items) (from
    the parquet min/max statistics; the column is only read to find the offending row), and
    (``require_train``) that there is a train split. ``verify=True`` also checks the sha256 of
    every file and (``check_unseen_users``) that every user of the other splits has a train
    interaction, which reads the user columns.
    """

    def __init__(self, directory: str | PathLike[str], *, verify: bool = False,
                 require_train: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        self._cache: dict[str, Pairs] = {}
        self._ts_cache: dict[str, np.ndarray | None] = {}
        self.manifest.verify(self.directory, checksums=verify)
        if require_train and "train" not in self.manifest.splits:
            hint = ("this is an unsplit log: run `dsl-data split --in DIR --out DIR2 ...`"
                    if "all" in self.manifest.splits else None)
            raise DataError(self.directory / "manifest.json", "no 'train' split", field="splits",
                            expected="a train split", hint=hint)
        for split in self.manifest.splits:
            if self.manifest.splits[split]["rows"] == 0:
                raise DataError(self.manifest.split_path(self.directory, split),
                                f"{split} split is empty", expected="at least one interaction")
            self._check_ids(split)
        if verify and "train" in self.manifest.splits:
            self.check_unseen_users()

    @property
    def num_users(self) -> int:
        return self.manifest.num_users

    @property
    def num_items(self) -> int:
        return self.manifest.num_items

    @property
    def split_names(self) -> list[str]:
        return list(self.manifest.splits)

    def has_split(self, name: str) -> bool:
        return name in self.manifest.splits

    def split(self, name: str) -> Pairs:
        """(users int64 [n], items int64 [n]) of split ``name``; read-only cached arrays."""
        if name not in self._cache:
            path = self.manifest.split_path(self.directory, name)
            table = pq.read_table(path, columns=["user_id", "item_id"])
            users = table.column("user_id").to_numpy().astype(np.int64, copy=False)
            items = table.column("item_id").to_numpy().astype(np.int64, copy=False)
            users.setflags(write=False)  # a caller mutating the cache would corrupt later reads
            items.setflags(write=False)
            self._cache[name] = (users, items)
        return self._cache[name]

    def has_timestamps(self, name: str) -> bool:
        path = self.manifest.split_path(self.directory, name)
        return pq.read_schema(path).get_field_index("timestamp") >= 0

    def timestamps(self, name: str) -> np.ndarray | None:
        """int64 [n] timestamps of split ``name`` (row-aligned with ``split``), or None."""
        if name not in self._ts_cache:
            ts = None
            if self.has_timestamps(name):
                path = self.manifest.split_path(self.directory, name)
                ts = pq.read_table(path, columns=["timestamp"]).column("timestamp").to_numpy()
                ts = ts.astype(np.int64, copy=False)
                ts.setflags(write=False)
            self._ts_cache[name] = ts
        return self._ts_cache[name]

    def split_path(self, name: str) -> Path:
        return self.manifest.split_path(self.directory, name)

    def unseen_users(self, split: str, reference: str = "train") -> np.ndarray:
        """Row indices of ``split`` whose user has no interaction in ``reference``: int64 [k]."""
        has = np.bincount(self.split(reference)[0], minlength=self.num_users) > 0
        return np.flatnonzero(~has[self.split(split)[0]])

    def check_unseen_users(self, reference: str = "train") -> None:
        """DataError naming the first row of a non-train split whose user has no train row."""
        for split in self.split_names:
            if split == reference:
                continue
            bad = self.unseen_users(split, reference)
            if bad.size:
                users = self.split(split)[0]
                n_users = np.unique(users[bad]).size
                raise DataError(self.split_path(split), f"user {int(users[bad[0]])} has no "
                                f"{reference} interaction ({n_users:,} such users, "
                                f"{bad.size:,} rows)", row=int(bad[0]), field="user_id",
                                expected=f"every {split} user to have at least one {reference} "
                                "interaction")

    def rows(self, name: str) -> int:
        return int(self.manifest.splits[name]["rows"]) if name in self.manifest.splits else 0

    def item_counts(self, split: str = "train") -> np.ndarray:
        """Interactions per item in ``split``: int64 [num_items]."""
        return np.bincount(self.split(split)[1], minlength=self.num_items).astype(np.int64)

    def user_counts(self, split: str = "train") -> np.ndarray:
        """Interactions per user in ``split``: int64 [num_users]."""
        return np.bincount(self.split(split)[0], minlength=self.num_users).astype(np.int64)

    def user_item_csr(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Items per user as CSR: (indptr int64 [num_users + 1], indices int64 [n]).

        ``indices[indptr[u]:indptr[u + 1]]`` are user u's items, sorted ascending.
        """
        users, items = self.split(split)
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=self.num_users), out=indptr[1:])
        du, di = np.diff(users), np.diff(items)
        # Canonical files are already sorted by (user, item); only foreign files pay the sort.
        if bool(np.all((du > 0) | ((du == 0) & (di >= 0)))):
            indices = items.copy()
        else:
            indices = items[np.lexsort((items, users))]
        return indptr, indices

    def _check_ids(self, split: str) -> None:
        path = self.manifest.split_path(self.directory, split)
        pf = pq.ParquetFile(path)
        check_schema(path, pf.schema_arrow)
        for column, bound, what in (("user_id", self.num_users, "num_users"),
                                    ("item_id", self.num_items, "num_items")):
            col = pf.schema_arrow.get_field_index(column)
            if _stats_in_range(pf, col, bound):
                continue
            values = pf.read(columns=[column]).column(column)
            if values.null_count:
                row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(path, "null id", row=row, field=column, expected="no nulls")
            arr = values.to_numpy()
            bad = (arr < 0) | (arr >= bound)
            if bad.any():
                row = int(np.argmax(bad))
                raise DataError(path, f"id {int(arr[row])} out of range", row=row, field=column,
                                expected=f"0 <= {column} < {what} = {bound}")


def _stats_in_range(pf: pq.ParquetFile, col: int, bound: int) -> bool:
    """True when every row group's min/max statistics prove the column is in [0, bound)."""
    meta = pf.metadata
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max or stats.null_count:
            return False
        if stats.min < 0 or stats.max >= bound:
            return False
    return True

