"""``manifest.json``: what a canonical dataset directory holds and how it was made."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SPLIT_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("item_id", pa.int64(), nullable=False),
])
TIMESTAMP_FIELD = pa.field("timestamp", pa.int64(), nullable=False)
SPLIT_SCHEMA_TS = SPLIT_SCHEMA.append(TIMESTAMP_FIELD)
# Vocabulary files: original id (any arrow type) -> dense id; one row per dense id, in order.
VOCAB_FILES = {"users": ("users.parquet", "user_id", "num_users"),
               "items": ("items.parquet", "item_id", "num_items")}
_HINT = "run `dsl-data prepare` or `dsl-data synth` to make a dataset directory"


def sha256_file(path: str | PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte pieces (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    """Contents of ``manifest.json``.

    ``splits`` maps a split name ("train", "valid", "test"; "all" for an unsplit log) to
    ``{"file": "train.parquet", "rows": int, "sha256": str}``; ``files`` lists the other files
    (the vocabularies "users" / "items": ``users.parquet`` / ``items.parquet`` with columns
    ``original_id`` and ``user_id`` / ``item_id``) the same way; ``created_by`` records the
    command, format, source paths, seed, parameters and what was dropped.
    """

    name: str
    num_users: int
    num_items: int
    splits: dict[str, dict[str, Any]]
    created_by: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def write(self, directory: str | PathLike[str]) -> Path:
        """Write ``<directory>/manifest.json`` (the directory must exist); returns its path."""
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def read(cls, directory: str | PathLike[str]) -> Manifest:
        """Read and check ``<directory>/manifest.json`` (``directory`` may be the json itself)."""
        directory = Path(directory)
        path = directory if directory.name == MANIFEST_NAME else directory / MANIFEST_NAME
        if not path.parent.is_dir():
            raise DataError(path.parent, "dataset directory not found", hint=_HINT)
        if not path.is_file():
            raise DataError(path, "manifest not found", expected="a dataset directory", hint=_HINT)
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, f"not valid JSON: {e}") from None
        return cls._from_dict(raw, path)

    @classmethod
    def _from_dict(cls, raw: Any, path: Path) -> Manifest:
        if not isinstance(raw, dict):
            raise DataError(path, "top level is not an object", expected="a JSON object")
        for key, typ in (("name", str), ("num_users", int), ("num_items", int), ("splits", dict)):
            if key not in raw:
                raise DataError(path, "missing field", field=key)
            if not isinstance(raw[key], typ) or isinstance(raw[key], bool):
                raise DataError(path, f"wrong type {type(raw[key]).__name__}", field=key,
                                expected=typ.__name__)
        version = raw.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise DataError(path, f"unsupported format_version {version!r}", field="format_version",
                            expected=f"{FORMAT_VERSION}")
        if raw["num_users"] < 0 or raw["num_items"] < 0:
            raise DataError(path, "negative count", field="num_users/num_items",
                            expected="counts >= 0")
        files = raw.get("files", {})
        if not isinstance(files, dict):
            raise DataError(path, "not an object", field="files")
        for group, entries in (("splits", raw["splits"]), ("files", files)):
            for split, entry in entries.items():
                _check_entry(path, f"{group}.{split}", entry)
        created_by = raw.get("created_by", {})
        if not isinstance(created_by, dict):
            raise DataError(path, "not an object", field="created_by")
        return cls(
            name=raw["name"],
            num_users=raw["num_users"],
            num_items=raw["num_items"],
            splits={k: dict(v) for k, v in raw["splits"].items()},
            created_by=created_by,
            format_version=version,
            files={k: dict(v) for k, v in files.items()},
        )

    def split_path(self, directory: str | PathLike[str], split: str) -> Path:
        """Path of ``split``'s parquet file inside ``directory``."""
        if split not in self.splits:
            raise DataError(Path(directory) / MANIFEST_NAME, f"no split {split!r}",
                            expected="one of " + ", ".join(self.splits))
        return Path(directory) / self.splits[split]["file"]

    def file_path(self, directory: str | PathLike[str], name: str) -> Path | None:
        """Path of the extra file ``name`` ("users", "items") or None when there is none."""
        entry = self.files.get(name)
        return None if entry is None else Path(directory) / entry["file"]

    def verify(self, directory: str | PathLike[str], *, checksums: bool = True) -> None:
        """Check every split and vocabulary file: present, the schema, row count and
        (``checksums``) sha256; a vocabulary must have one row per user / item.

        Raises DataError on the first mismatch.
        """
        entries = [(f"split file of {s!r}", self.split_path(directory, s), e, None)
                   for s, e in self.splits.items()]
        entries += [(f"{n!r} file", Path(directory) / e["file"], e, n)
                    for n, e in self.files.items()]
        for what, path, entry, vocab in entries:
            if not path.is_file():
                raise DataError(path, f"{what} is missing",
                                expected=f"the file listed in {MANIFEST_NAME}")
            try:
                meta = pq.read_metadata(path)
                schema = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as e:
                raise DataError(path, f"not a readable parquet file: {e}") from None
            if vocab is None:
                check_schema(path, schema)
            elif vocab in VOCAB_FILES:
                _, column, count = VOCAB_FILES[vocab]
                for name in ("original_id", column):
                    if schema.get_field_index(name) < 0:
                        raise DataError(path, "missing column", field=name,
                                        expected="vocabulary columns original_id, " + column)
                if meta.num_rows != getattr(self, count):
                    raise DataError(path, f"vocabulary has {meta.num_rows} rows but the manifest "
                                    f"says {count} = {getattr(self, count)}", field="rows",
                                    expected=f"one row per dense id ({count})")
            if meta.num_rows != entry["rows"]:
                raise DataError(path, f"has {meta.num_rows} rows but the manifest says "
                                f"{entry['rows']}", field="rows",
                                expected="the row count recorded in the manifest")
            if checksums:
                digest = sha256_file(path)
                if digest != entry["sha256"]:
                    raise DataError(path, f"sha256 {digest} differs from the manifest's "
                                    f"{entry['sha256']}", field="sha256",
                                    expected="an unmodified file")


def _check_entry(path: Path, where: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise DataError(path, "not an object", field=where, expected="{file, rows, sha256}")
    for key, typ in (("file", str), ("rows", int), ("sha256", str)):
        if not isinstance(entry.get(key), typ):
            raise DataError(path, f"missing or wrong {key!r}", field=where,
                            expected=f"{key}: {typ.__name__}")
    if Path(entry["file"]).name != entry["file"]:
        raise DataError(path, f"file {entry['file']!r} is not a plain name", field=where,
                        expected="a file inside the dataset directory")


def check_schema(path: Path, schema: pa.Schema) -> None:
    """DataError unless ``schema`` has int64 ``user_id`` and ``item_id`` columns (and, if it has
    a ``timestamp`` column, that it is int64 too)."""
    for name in ("user_id", "item_id", "timestamp"):
        idx = schema.get_field_index(name)
        if idx < 0:
            if name == "timestamp":
                continue
            raise DataError(path, "missing column", field=name, expected="an int64 column")
        if schema.field(idx).type != pa.int64():
            raise DataError(path, f"column type {schema.field(idx).type}", field=name,
                            expected="int64")
