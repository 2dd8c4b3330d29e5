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

    ``splits`` maps a split name ("train", "valid", "test") to ``{"file": "train.parquet",
    "rows": int, "sha256": str}``; ``created_by`` records the command, format, source paths,
    seed and parameters that made the directory.
    """

    name: str
    num_users: int
    num_items: int
    splits: dict[str, dict[str, Any]]
    created_by: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

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
        for split, entry in raw["splits"].items():
            where = f"splits.{split}"
            if not isinstance(entry, dict):
                raise DataError(path, "not an object", field=where, expected="{file, rows, sha256}")
            for key, typ in (("file", str), ("rows", int), ("sha256", str)):
                if not isinstance(entry.get(key), typ):
                    raise DataError(path, f"missing or wrong {key!r}", field=where,
                                    expected=f"{key}: {typ.__name__}")
            if Path(entry["file"]).name != entry["file"]:
                raise DataError(path, f"file {entry['file']!r} is not a plain name", field=where,
                                expected="a file inside the dataset directory")
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
        )

    def split_path(self, directory: str | PathLike[str], split: str) -> Path:
        """Path of ``split``'s parquet file inside ``directory``."""
        if split not in self.splits:
            raise DataError(Path(directory) / MANIFEST_NAME, f"no split {split!r}",
                            expected="one of " + ", ".join(self.splits))
        return Path(directory) / self.splits[split]["file"]

    def verify(self, directory: str | PathLike[str], *, checksums: bool = True) -> None:
        """Check every split file: present, the schema, row count and (``checksums``) sha256.

        Raises DataError on the first mismatch.
        """
        for split, entry in self.splits.items():
            path = self.split_path(directory, split)
            if not path.is_file():
                raise DataError(path, f"split file of {split!r} is missing",
                                expected=f"the file listed in {MANIFEST_NAME}")
            try:
                meta = pq.read_metadata(path)
                schema = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as e:
                raise DataError(path, f"not a readable parquet file: {e}") from None
            check_schema(path, schema)
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


def check_schema(path: Path, schema: pa.Schema) -> None:
    """DataError unless ``schema`` has int64 ``user_id`` and ``item_id`` columns."""
    for name in ("user_id", "item_id"):
        idx = schema.get_field_index(name)
        if idx < 0:
            raise DataError(path, "missing column", field=name, expected="an int64 column")
        if schema.field(idx).type != pa.int64():
            raise DataError(path, f"column type {schema.field(idx).type}", field=name,
                            expected="int64")
