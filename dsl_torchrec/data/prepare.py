"""Convert benchmark files into a canonical dataset directory, written atomically.

``DatasetWriter`` is the one place that writes a dataset directory (prepare and synth both use
it): split files are appended in row-group chunks into a temporary sibling directory, which
replaces ``out`` by a rename only once everything, ``manifest.json`` included, is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .formats import READERS, read_pairs_lines
from .manifest import MANIFEST_NAME, SPLIT_SCHEMA, SPLIT_SCHEMA_TS, Manifest, sha256_file

ROW_GROUP_SIZE = 1 << 20  # rows; the loader reads per-rank slices by row group


def check_out_dir(out: Path, overwrite: bool) -> None:
    """DataError unless ``out`` may be (re)placed by a new dataset directory.

    A missing or empty directory is fine; a non-empty one only with ``overwrite`` and only if
    it is a dataset directory (has manifest.json), so a mistyped ``--out`` never deletes work.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(out, "exists and is not a directory", expected="a new output directory")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise DataError(out, "output directory exists and is not empty",
                        expected="a new or empty directory", hint="pass --overwrite to replace it")
    if not (out / MANIFEST_NAME).is_file():
        raise DataError(out, "refusing to overwrite a directory that is not a dataset "
                        f"directory (no {MANIFEST_NAME})", expected="a dataset directory")


class DatasetWriter:
    """Writes split parquet files and the manifest into a temp dir, then renames it to ``out``.

    Use as a context manager: an exception inside the ``with`` (or a missing ``finish``)
    removes the temp dir, so a failed run never leaves a half-written ``out``.
    """

    def __init__(self, out: str | PathLike[str], *, overwrite: bool = False,
                 row_group_size: int = ROW_GROUP_SIZE) -> None:
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        self.row_group_size = row_group_size
        check_out_dir(self.out, overwrite)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows: dict[str, int] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._done = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._done:
            self.abort()

    def append(self, split: str, users: np.ndarray, items: np.ndarray,
               timestamps: np.ndarray | None = None) -> None:
        """Append rows (users int64 [n], items int64 [n], optional timestamps int64 [n]) to
        ``split``; empty chunks are no-ops. Every chunk of a split has timestamps or none has."""
        if len(users) != len(items) or (timestamps is not None and len(timestamps) != len(users)):
            raise ValueError(f"split {split!r}: column lengths differ")
        if len(users) == 0:
            return
        schema = SPLIT_SCHEMA if timestamps is None else SPLIT_SCHEMA_TS
        if split not in self._writers:
            self._writers[split] = pq.ParquetWriter(self.tmp / f"{split}.parquet", schema)
            self._rows[split] = 0
        elif self._writers[split].schema != schema:
            raise ValueError(f"split {split!r}: chunks with and without timestamps")
        cols = [users, items] + ([] if timestamps is None else [timestamps])
        table = pa.table([pa.array(np.asarray(c, np.int64)) for c in cols], schema=schema)
        self._writers[split].write_table(table, row_group_size=self.row_group_size)
        self._rows[split] += len(users)

    def add_file(self, name: str, table: pa.Table) -> None:
        """Write ``table`` as ``<name>.parquet`` (a vocabulary: "users" / "items")."""
        path = self.tmp / f"{name}.parquet"
        pq.write_table(table, path)
        self._files[name] = {"file": path.name, "rows": table.num_rows}

    def copy_file(self, name: str, src: Path, rows: int) -> None:
        """Copy an existing ``<name>.parquet`` (e.g. a vocabulary of the input dataset)."""
        shutil.copyfile(src, self.tmp / f"{name}.parquet")
        self._files[name] = {"file": f"{name}.parquet", "rows": int(rows)}

    def rows(self, split: str) -> int:
        """Rows appended to ``split`` so far."""
        return self._rows.get(split, 0)

    def finish(self, name: str, num_users: int, num_items: int,
               created_by: dict[str, Any]) -> Manifest:
        """Close the split files, write manifest.json, move the directory into place."""
        for writer in self._writers.values():
            writer.close()
        splits = {
            split: {"file": f"{split}.parquet", "rows": self._rows[split],
                    "sha256": sha256_file(self.tmp / f"{split}.parquet")}
            for split in self._writers
        }
        files = {k: {**v, "sha256": sha256_file(self.tmp / v["file"])}
                 for k, v in self._files.items()}
        manifest = Manifest(name=name, num_users=int(num_users), num_items=int(num_items),
                            splits=splits, created_by=created_by, files=files)
        manifest.write(self.tmp)
        check_out_dir(self.out, self.overwrite)  # it may have appeared while we worked
        old = None
        if self.out.exists():
            # Move the old directory aside first so `out` is never a mix of old and new.
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old / "d")
        os.replace(self.tmp, self.out)
        self._done = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest

    def abort(self) -> None:
        """Drop everything written so far."""
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - cleanup must not mask the original error
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True


def dedup_sort(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (user, item) pairs sorted by user, then item. In/out: int64 [n] each."""
    if users.size == 0:
        return users.astype(np.int64), items.astype(np.int64)
    n_items = int(items.max()) + 1
    if (int(users.max()) + 1) * n_items < 2**63:
        key = np.unique(users * n_items + items)
        return key // n_items, key % n_items
    pairs = np.unique(np.stack([users, items], axis=1), axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def carve_valid(users: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Mask [n] of the rows to move from train to valid.

    ``users`` must be sorted (grouped). Each user with n_u rows gives round-half-up(fraction *
    n_u) of them, chosen uniformly at random, but always keeps at least one train row.
    """
    n = users.size
    mask = np.zeros(n, dtype=bool)
    if n == 0 or fraction <= 0:
        return mask
    _, starts, counts = np.unique(users, return_index=True, return_counts=True)
    take = np.minimum(np.floor(fraction * counts + 0.5).astype(np.int64), counts - 1)
    # Random order within each user group: sort by (user, random key).
    order = np.lexsort((rng.random(n), users))
    rank = np.arange(n) - np.repeat(starts, counts)
    mask[order[rank < np.repeat(take, counts)]] = True
    return mask


def prepare(
    format: str,
    train: str | PathLike[str],
    test: str | PathLike[str],
    out: str | PathLike[str],
    valid: str | PathLike[str] | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    name: str | None = None,
    overwrite: bool = False,
    allow_unseen_users: bool = False,
) -> Manifest:
    """Read benchmark ``train`` / ``test`` (/ ``valid``) files and write a dataset dir at ``out``.

    Each split is deduplicated and sorted by user. Without a ``valid`` file and with
    ``valid_fraction > 0``, a seeded per-user fraction of train becomes ``valid`` (each user
    keeps >= 1 train item). num_users / num_items = max id + 1 over all splits. A test / valid
    user without train interactions is a DataError naming its line unless
    ``allow_unseen_users``. Empty files are DataErrors.
    """
    if format not in READERS:
        raise DataError(train, f"unknown format {format!r}",
                        expected="one of " + ", ".join(sorted(READERS)))
    if not 0 <= valid_fraction < 1:
        raise DataError(train, f"valid_fraction {valid_fraction} out of range",
                        field="valid_fraction", expected="0 <= valid_fraction < 1")
    out = Path(out)
    sources = {"train": Path(train), "test": Path(test)}
    if valid is not None:
        sources["valid"] = Path(valid)
    with DatasetWriter(out, overwrite=overwrite) as writer:  # fails fast on a taken `out`
        splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        duplicates: dict[str, int] = {}
        lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split, path in sources.items():
            u, i, line = read_pairs_lines(format, path)
            if u.size == 0:
                raise DataError(path, f"no interactions in the {split} file",
                                expected=f"a non-empty {split} file")
            lines[split] = (u, line)
            splits[split] = dedup_sort(u, i)
            duplicates[split] = int(u.size - splits[split][0].size)
        has_train = np.zeros(int(splits["train"][0].max()) + 1, dtype=bool)
        has_train[splits["train"][0]] = True
        for split in ("valid", "test"):
            if split not in lines or allow_unseen_users:
                continue
            u, line = lines[split]
            unseen = (u >= has_train.size) | ~has_train[np.minimum(u, has_train.size - 1)]
            if unseen.any():
                k = int(np.argmax(unseen))
                raise DataError(sources[split], f"user {int(u[k])} has no interaction in the "
                                f"train file ({np.unique(u[unseen]).size:,} such users)",
                                line=int(line[k]), expected=f"every {split} user to appear in "
                                f"{sources['train'].name}", hint="pass --allow-unseen-users to "
                                "keep them (cold-start users)")
        carved = valid is None and valid_fraction > 0
        if carved:
            tu, ti = splits["train"]
            to_valid = carve_valid(tu, valid_fraction, np.random.default_rng(seed))
            splits["train"] = (tu[~to_valid], ti[~to_valid])
            splits["valid"] = (tu[to_valid], ti[to_valid])
        num_users = max(int(u.max()) + 1 for u, _ in splits.values() if u.size)
        num_items = max(int(i.max()) + 1 for _, i in splits.values() if i.size)
        for split in ("train", "valid", "test"):
            if split in splits:
                writer.append(split, *splits[split])
        created_by = {
            "command": "prepare",
            "format": format,
            "source": {k: str(p.absolute()) for k, p in sources.items()},
            "source_sha256": {k: sha256_file(p) for k, p in sources.items()},
            "seed": seed,
            "valid_fraction": valid_fraction if carved else None,
            "valid_from": "carved from train" if carved else ("file" if valid else None),
            "duplicates_dropped": duplicates,
            "dropped": {"duplicate_pairs": int(sum(duplicates.values()))},
        }
        return writer.finish(name or out.name, num_users, num_items, created_by)
