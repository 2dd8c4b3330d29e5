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
    count and that all ids lie in [0, num_users) / [0, num_items) (from the parquet min/max
    statistics; the column is only read to find the offending row), and that train is not
    empty. ``verify=True`` also checks the sha256 of every file.
    """

    def __init__(self, directory: str | PathLike[str], *, verify: bool = False) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        self._cache: dict[str, Pairs] = {}
        self.manifest.verify(self.directory, checksums=verify)
        if "train" not in self.manifest.splits:
            raise DataError(self.directory / "manifest.json", "no 'train' split", field="splits",
                            expected="a train split")
        for split in self.manifest.splits:
            self._check_ids(split)
        if self.manifest.splits["train"]["rows"] == 0:
            raise DataError(self.manifest.split_path(self.directory, "train"),
                            "train split is empty", expected="at least one interaction")

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

