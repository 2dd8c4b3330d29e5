"""Raw interaction logs -> an unsplit canonical dataset: MovieLens files and generic logs.

``prepare_log`` reads ``movielens`` (``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``;
``ratings.dat``: ``user::item::rating::timestamp``) or ``log`` files (CSV / TSV / parquet with
named user / item / [timestamp] / [rating] columns and raw ids of any type), then, in this order:

1. drops rows with rating < ``min_rating`` (when given);
2. drops duplicate (user, item) pairs, keeping the earliest (``dedup="earliest"``, the default)
   or latest timestamp, or the first row in file order when there are no timestamps;
3. k-core filtering (``kcore=N``): drops users and items with fewer than N interactions,
   repeated until no row is dropped (removing an item can push a user below N and back);
4. dictionary-encodes the surviving raw ids with pyarrow (``pc.unique`` + ``pc.index_in``) into
   dense ids 0..U-1 / 0..I-1 in sorted order of the original ids, and saves the vocabularies
   ``users.parquet`` / ``items.parquet`` (``original_id`` -> ``user_id`` / ``item_id``).

The result is one split ``all`` (sorted by user, then item; an int64 ``timestamp`` column when
the log has timestamps); ``dsl-data split`` turns it into train / valid / test. How many rows
each step dropped is recorded in ``manifest.created_by["dropped"]``.

CSV parsing runs in pyarrow's multithreaded reader; only when it fails is the file re-read in a
slow, single-threaded diagnostic pass that finds the physical line (blank lines counted, quoted
multi-line fields not supported) of the first bad row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import DataError
from .formats import read_bytes
from .manifest import Manifest, sha256_file
from .prepare import DatasetWriter

LOG_FORMATS = ("movielens", "log")
ROLES = ("user", "item", "timestamp", "rating")
# Column names tried, in order, when the caller does not name a role's column.
DEFAULT_COLUMNS = {
    "user": ("user_id", "user", "userId", "UserID", "uid", "reviewerID", "user_procid"),
    "item": ("item_id", "item", "itemId", "movieId", "MovieID", "movie_id", "iid", "asin",
             "item_procid"),
    "timestamp": ("timestamp", "time", "ts", "Timestamp", "unixReviewTime", "datetime"),
    "rating": ("rating", "Rating", "score", "overall"),
}
MOVIELENS_COLUMNS = ["user", "item", "rating", "timestamp"]
_INT_RE = r"^\s*[+-]?\d+\s*$"
_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


@dataclass
class RawLog:
    """Columns of a log, one entry per data row (blank lines skipped).

    user / item: pyarrow arrays of any type; timestamp: int64 [n] or None; rating: float64 [n]
    or None; columns: role -> the column name it came from.
    """

    path: Path
    user: pa.ChunkedArray
    item: pa.ChunkedArray
    timestamp: np.ndarray | None
    rating: np.ndarray | None
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.user)


class _Locator:
    """Maps a 0-based data row to where it is in the file: a physical line (text) or a row."""

    def __init__(self, path: Path, data: bytes | None, header_rows: int) -> None:
        self.path, self.data, self.header_rows = path, data, header_rows
        self._lines: np.ndarray | None = None

    def lines(self) -> np.ndarray:
        """1-based physical line numbers of the non-blank lines (what pyarrow counts as rows)."""
        if self._lines is None:
            buf = np.frombuffer(self.data or b"", dtype=np.uint8)
            nl = np.flatnonzero(buf == ord("\n"))
            starts = np.concatenate([[0], nl + 1])
            ends = np.concatenate([nl, [buf.size]])
            length = ends - starts
            last = np.clip(ends - 1, 0, max(buf.size - 1, 0))
            if buf.size:
                length = length - ((length > 0) & (buf[last] == ord("\r")))
            self._lines = np.flatnonzero(length > 0) + 1
        return self._lines

    def error(self, row: int, problem: str, *, field: str | None = None,
              expected: str | None = None, hint: str | None = None) -> DataError:
        if self.data is None:  # parquet: a 0-based row
            return DataError(self.path, problem, row=row, field=field, expected=expected,
                             hint=hint)
        lines = self.lines()
        k = row + self.header_rows
        line = int(lines[k]) if k < lines.size else None
        return DataError(self.path, problem, line=line, field=field, expected=expected,
                         hint=hint)


def _pick_columns(path: Path, available: list[str], named: dict[str, str | None],
                  required: tuple[str, ...]) -> dict[str, str]:
    """role -> column for every role that was named or found under a default name."""
    out: dict[str, str] = {}
    for role in ROLES:
        name = named.get(role)
        if name is not None:
            if name not in available:
                raise DataError(path, f"no column {name!r} (given for the {role})",
                                field=name, expected="one of the columns " + ", ".join(
                                    repr(c) for c in available))
            out[role] = name
            continue
        found = next((c for c in DEFAULT_COLUMNS[role] if c in available), None)
        if found is not None:
            out[role] = found
        elif role in required:
            raise DataError(path, f"no {role} column", expected=f"a column named one of "
                            f"{', '.join(DEFAULT_COLUMNS[role])} or the one given by "
                            f"--{role}-col; the file has " + ", ".join(repr(c) for c in available))
    if len(set(out.values())) != len(out):
        raise DataError(path, f"one column used for two roles: {out}",
                        expected="distinct user / item / timestamp / rating columns")
    return out


def _header_names(path: Path, data: bytes, delimiter: str) -> list[str]:
    text = data[: data.find(b"\n")] if b"\n" in data else data
    line = text.decode("utf-8", errors="replace").rstrip("\r")
    if not line.strip():
        raise DataError(path, "empty header line", line=1,
                        expected="a header naming the columns, or --no-header with --columns")
    return [c.lstrip("\ufeff") for c in next(csv.reader([line], delimiter=delimiter))]


def _first_invalid_row(data: bytes, delimiter: str, header: bool,
                       names: list[str] | None) -> Any:
    """pyarrow's InvalidRow of the first row with the wrong field count, or None."""
    found: list[Any] = []

    def handler(row: Any) -> str:
        found.append(row)
        return "error"

    try:
        pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False, column_names=names,
                                           autogenerate_column_names=False,
                                           skip_rows=0),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in (names or [])}),
        )
    except pa.ArrowInvalid:
        pass
    return found[0] if found else None


def _read_delimited(path: Path, data: bytes, delimiter: str, header: bool,
                    names: list[str] | None, named: dict[str, str | None],
                    types: dict[str, pa.DataType], sep_label: str | None = None,
                    ) -> tuple[dict[str, pa.ChunkedArray], dict[str, str], _Locator]:
    """Read the role columns of a delimited text file; ``types`` maps role -> arrow type."""
    locator = _Locator(path, data, 1 if header else 0)
    if header:
        available = _header_names(path, data, delimiter)
        read_names = None
    else:
        if not names:
            raise DataError(path, "no column names", expected="--columns when --no-header")
        available = read_names = list(names)
    cols = _pick_columns(path, available, named, ("user", "item"))
    column_types = {cols[r]: t for r, t in types.items() if r in cols}
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=read_names),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(include_columns=list(cols.values()),
                                                 column_types=column_types),
        )
    except pa.ArrowInvalid as e:
        err = _diagnose(path, data, delimiter, header, read_names, available, cols, types,
                        locator, sep_label or _sep_name(delimiter))
        if err is not None:
            raise err from None
        table = _read_as_text(path, data, delimiter, read_names, cols, types, str(e))
    out = {role: table.column(name) for role, name in cols.items()}
    return out, cols, locator


def _diagnose(path: Path, data: bytes, delimiter: str, header: bool, names: list[str] | None,
              available: list[str], cols: dict[str, str], types: dict[str, pa.DataType],
              locator: _Locator, sep_label: str) -> DataError | None:
    """The DataError for a file pyarrow refused: field count or a value of the wrong type."""
    bad = _first_invalid_row(data, delimiter, header, names)
    if bad is not None:
        lines = locator.lines()
        line = int(lines[bad.number - 1]) if bad.number and bad.number <= lines.size else None
        return DataError(path, f"{bad.actual_columns} field(s) on the line", line=line,
                         expected=f"{bad.expected_columns} {sep_label}-separated "
                         f"fields: {', '.join(available)}")
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(include_columns=list(cols.values()),
                                             column_types={c: pa.string()
                                                           for c in cols.values()}),
    )
    for role, typ in types.items():
        if role not in cols or pa.types.is_string(typ):
            continue
        col = table.column(cols[role])
        pattern = _INT_RE if pa.types.is_integer(typ) else _FLOAT_RE
        ok = pc.fill_null(pc.match_substring_regex(col, pattern), False)
        ok_np = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
        if not ok_np.all():
            row = int(np.argmin(ok_np))
            value = col[row].as_py()
            what = "an integer" if pa.types.is_integer(typ) else "a number"
            return locator.error(row, f"non-numeric {role} {value!r}" if value else
                                 f"missing {role}", field=cols[role], expected=what)
    return None  # the caller retries with the untyped columns read as text


def _read_as_text(path: Path, data: bytes, delimiter: str, names: list[str] | None,
                  cols: dict[str, str], types: dict[str, pa.DataType],
                  arrow_msg: str) -> pa.Table:
    """Typed roles as ``types`` says, the others (timestamp) as text; pyarrow's type inference
    looks at the first block only, so a late odd value fails the fast read."""
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(cols.values()),
                column_types={c: types.get(r, pa.string()) for r, c in cols.items()}),
        )
    except pa.ArrowInvalid:
        raise DataError(path, f"could not parse the file: {arrow_msg}") from None


def _sep_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", " ": "space", "|": "pipe"}.get(
        delimiter, repr(delimiter))


def read_movielens(path: str | PathLike[str]) -> RawLog:
    """Read MovieLens ``u.data`` (tab-separated) or ``ratings.dat`` (``::``-separated) ratings:
    ``user, item, rating, timestamp`` per line, integer ids and timestamps, numeric ratings."""
    path = Path(path)
    data = read_bytes(path, "an interaction log file")
    sep = "tab"
    if b"::" in data[:4096]:
        data = data.replace(b"::", b"\t")  # same line numbers; pyarrow has no 2-byte delimiter
        sep = "'::'"
    types = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float64(),
             "timestamp": pa.int64()}
    cols, names, locator = _read_delimited(path, data, "\t", False, MOVIELENS_COLUMNS,
                                           {r: r for r in MOVIELENS_COLUMNS}, types, sep)
    log = _finish(path, cols, names, locator)
    return log


def read_log(path: str | PathLike[str], *, user_col: str | None = None,
             item_col: str | None = None, time_col: str | None = None,
             rating_col: str | None = None, delimiter: str | None = None,
             header: bool = True, columns: list[str] | None = None) -> RawLog:
    """Read a generic interaction log: parquet (by suffix) or delimited text.

    The delimiter defaults to ``,`` for ``.csv`` and tab otherwise. Without ``header`` the
    column names come from ``columns``. Unnamed roles are looked up under ``DEFAULT_COLUMNS``;
    user and item are required. Ids keep their type (text ids are read as strings, so ``007``
    and ``7`` stay different users); timestamps become int64 (integers as they are, floats
    floored, dates / times as seconds since the epoch); ratings become float64.
    """
    path = Path(path)
    named = {"user": user_col, "item": item_col, "timestamp": time_col, "rating": rating_col}
    if path.suffix.lower() in (".parquet", ".pq"):
        if not path.is_file():
            read_bytes(path, "an interaction log file")  # the file-not-found / directory error
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(path, f"not a readable parquet file: {e}") from None
        cols = _pick_columns(path, pf.schema_arrow.names, named, ("user", "item"))
        table = pf.read(columns=list(cols.values()))
        return _finish(path, {r: table.column(c) for r, c in cols.items()}, cols,
                       _Locator(path, None, 0))
    data = read_bytes(path, "an interaction log file")
    if delimiter is None:
        delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    if len(delimiter) != 1:
        raise DataError(path, f"delimiter {delimiter!r}", expected="a single character")
    types = {"user": pa.string(), "item": pa.string(), "rating": pa.float64()}
    cols, names, locator = _read_delimited(path, data, delimiter, header, columns, named, types)
    return _finish(path, cols, names, locator)


def _finish(path: Path, cols: dict[str, pa.ChunkedArray], names: dict[str, str],
            locator: _Locator) -> RawLog:
    """Check ids (no nulls, no empty text), convert timestamp / rating; RawLog."""
    for role in ("user", "item"):
        col = cols[role]
        if pa.types.is_dictionary(col.type):
            col = pa.chunked_array([c.dictionary_decode() for c in col.chunks],
                                   type=col.type.value_type)
            cols[role] = col
        if col.null_count:
            row = _first_true(col.is_null())
            raise locator.error(row, f"missing {role} id", field=names[role],
                                expected=f"a {role} id on every row")
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0)
            if pc.any(empty).as_py():
                raise locator.error(_first_true(empty), f"empty {role} id", field=names[role],
                                    expected=f"a non-empty {role} id")
    ts = _timestamps(cols["timestamp"], names["timestamp"], locator) if "timestamp" in cols \
        else None
    rating = _ratings(cols["rating"], names["rating"], locator) if "rating" in cols else None
    if len(cols["user"]) == 0:
        raise DataError(path, "no interactions", expected="at least one data row")
    return RawLog(path, cols["user"], cols["item"], ts, rating, dict(names))


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    mask = pc.fill_null(mask, False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)))


def _timestamps(col: pa.ChunkedArray, name: str, locator: _Locator) -> np.ndarray:
    """int64 timestamps: integers as they are, floats floored, dates/times in epoch seconds."""
    if col.null_count:
        raise locator.error(_first_true(col.is_null()), "missing timestamp", field=name,
                            expected="a timestamp on every row")
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        is_int = pc.match_substring_regex(col, _INT_RE)
        n_int = pc.sum(pc.cast(is_int, pa.int64())).as_py() or 0
        if n_int == len(col):
            return np.asarray(pc.cast(pc.utf8_trim_whitespace(col), pa.int64()).to_numpy(),
                              dtype=np.int64)
        if n_int:  # mostly numbers: the first non-number is the bad row
            row = _first_true(pc.invert(is_int))
            raise locator.error(row, f"timestamp {col[row].as_py()!r} is not an integer",
                                field=name, expected="unix seconds on every row, like the others")
        try:
            col = pc.cast(col, pa.timestamp("s"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for row, value in enumerate(col.to_pylist()):
                try:
                    pa.scalar(value).cast(pa.timestamp("s"))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise locator.error(row, f"timestamp {value!r} is not a number or an "
                                        "ISO-8601 date/time", field=name,
                                        expected="unix seconds or YYYY-MM-DD[ HH:MM:SS]") from None
            raise DataError(locator.path, f"could not parse the timestamp column {name!r}")
        typ = col.type
    if pa.types.is_integer(typ):
        return np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_floating(typ):
        arr = np.asarray(col.to_numpy(), dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.all():
            row = int(np.argmin(finite))
            raise locator.error(row, f"timestamp {arr[row]}", field=name,
                                expected="a finite number")
        return np.floor(arr).astype(np.int64)
    if pa.types.is_date(typ):
        col = pc.cast(col, pa.timestamp("s"))
        typ = col.type
    if pa.types.is_timestamp(typ):
        if typ.tz is not None:
            col = pc.cast(col, pa.timestamp(typ.unit))
        col = pc.cast(col, pa.timestamp("s"), safe=False)
        return np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    raise DataError(locator.path, f"timestamp column of type {typ}", field=name,
                    expected="integers, floats, dates or date-times")


def _ratings(col: pa.ChunkedArray, name: str, locator: _Locator) -> np.ndarray:
    if col.null_count:
        raise locator.error(_first_true(col.is_null()), "missing rating", field=name,
                            expected="a rating on every row")
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
            or pa.types.is_decimal(col.type)):
        raise DataError(locator.path, f"rating column of type {col.type}", field=name,
                        expected="numbers")
    return np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)


# ----------------------------------------------------------------------------- filter + encode


def encode_ids(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode raw ids: (codes int64 [n], vocabulary [V] sorted ascending).

    ``vocabulary[codes[k]] == col[k]``; the codes follow the sort order of the original ids,
    so the encoding does not depend on row order.
    """
    vocab = pc.unique(col)
    vocab = vocab.take(pc.sort_indices(vocab))
    codes = pc.index_in(col, value_set=vocab)
    if isinstance(codes, pa.ChunkedArray):
        codes = pa.concat_arrays(codes.chunks) if codes.num_chunks else pa.array([], pa.int32())
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64), vocab


def _pair_key(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users * max(n_items, 1) + items


def filter_log(users: np.ndarray, items: np.ndarray, ts: np.ndarray | None,
               rating: np.ndarray | None, *, min_rating: float | None, kcore: int,
               dedup: str) -> tuple[np.ndarray, dict[str, int]]:
    """Indices of the rows that survive (sorted ascending) and the drop counts per reason.

    users / items: int64 codes [n]; see the module docstring for the order of the steps.
    """
    n = users.size
    keep = np.arange(n)
    dropped: dict[str, int] = {}
    if min_rating is not None:
        ok = rating >= min_rating
        dropped["rating_below_min"] = int(n - np.count_nonzero(ok))
        keep = keep[ok]
    n_items = int(items.max()) + 1 if n else 1
    key = _pair_key(users[keep], items[keep], n_items)
    if ts is None:
        order = np.argsort(key, kind="stable")  # first row in file order wins
    else:
        t = ts[keep] if dedup == "earliest" else -ts[keep]
        order = np.lexsort((np.arange(keep.size), t, key))
    first = np.ones(order.size, dtype=bool)
    first[1:] = key[order[1:]] != key[order[:-1]]
    dropped["duplicate_pairs"] = int(order.size - np.count_nonzero(first))
    keep = np.sort(keep[order[first]])
    rounds = 0
    kcore_dropped = 0
    if kcore > 1:
        while keep.size:
            u, i = users[keep], items[keep]
            bad = (np.bincount(u)[u] < kcore) | (np.bincount(i)[i] < kcore)
            if not bad.any():
                break
            rounds += 1
            kcore_dropped += int(np.count_nonzero(bad))
            keep = keep[~bad]
        dropped["kcore"] = kcore_dropped
        dropped["kcore_rounds"] = rounds
    return keep, dropped


def describe_drops(created_by: dict[str, Any]) -> str:
    """One line: rows read, dropped per reason, kept (from a prepare manifest's created_by)."""
    d = created_by.get("dropped", {})
    parts = []
    if "rating_below_min" in d:
        parts.append(f"{d['rating_below_min']:,} with rating < {created_by['min_rating']:g}")
    parts.append(f"{d.get('duplicate_pairs', 0):,} duplicate (user, item) pairs")
    if "kcore" in d:
        parts.append(f"{d['kcore']:,} by {created_by['kcore']}-core filtering "
                     f"({d['kcore_rounds']} round(s))")
    total = created_by["rows_read"] - created_by["rows_kept"]
    return (f"read {created_by['rows_read']:,} rows; dropped {total:,}: " + ", ".join(parts)
            + f"; kept {created_by['rows_kept']:,}")


def prepare_log(
    format: str,
    input: str | PathLike[str],
    out: str | PathLike[str],
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    delimiter: str | None = None,
    header: bool = True,
    columns: list[str] | None = None,
    min_rating: float | None = None,
    kcore: int = 0,
    dedup: str = "earliest",
    name: str | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Read a MovieLens file or a generic log and write an unsplit dataset dir at ``out``
    (split ``all`` + ``users.parquet`` / ``items.parquet``); see the module docstring."""
    input, out = Path(input), Path(out)
    if format not in LOG_FORMATS:
        raise DataError(input, f"unknown log format {format!r}",
                        expected="one of " + ", ".join(LOG_FORMATS))
    if dedup not in ("earliest", "latest"):
        raise DataError(input, f"dedup={dedup!r}", field="dedup",
                        expected="'earliest' or 'latest'")
    if kcore < 0:
        raise DataError(input, f"kcore={kcore}", field="kcore", expected="kcore >= 0")
    with DatasetWriter(out, overwrite=overwrite) as writer:  # fails fast on a taken `out`
        if format == "movielens":
            log = read_movielens(input)
        else:
            log = read_log(input, user_col=user_col, item_col=item_col, time_col=time_col,
                           rating_col=rating_col, delimiter=delimiter, header=header,
                           columns=columns)
        if min_rating is not None and log.rating is None:
            raise DataError(input, "--min-rating given but the log has no rating column",
                            expected="a rating column (name it with --rating-col)")
        ucodes, uvocab = encode_ids(log.user)
        icodes, ivocab = encode_ids(log.item)
        keep, dropped = filter_log(ucodes, icodes, log.timestamp, log.rating,
                                   min_rating=min_rating, kcore=kcore, dedup=dedup)
        if keep.size == 0:
            raise DataError(input, f"no interactions left after filtering (dropped: {dropped})",
                            expected="a lower --min-rating or --kcore")
        used_u, users = np.unique(ucodes[keep], return_inverse=True)
        used_i, items = np.unique(icodes[keep], return_inverse=True)
        users, items = users.astype(np.int64).ravel(), items.astype(np.int64).ravel()
        ts = None if log.timestamp is None else log.timestamp[keep]
        order = np.lexsort((items, users))
        writer.append("all", users[order], items[order], None if ts is None else ts[order])
        writer.add_file("users", pa.table({"original_id": uvocab.take(pa.array(used_u)),
                                           "user_id": pa.array(np.arange(used_u.size))}))
        writer.add_file("items", pa.table({"original_id": ivocab.take(pa.array(used_i)),
                                           "item_id": pa.array(np.arange(used_i.size))}))
        created_by = {
            "command": "prepare",
            "format": format,
            "source": {"all": str(input.absolute())},
            "source_sha256": {"all": sha256_file(input)},
            "columns": log.columns,
            "min_rating": min_rating,
            "kcore": kcore,
            "dedup": dedup if log.timestamp is not None else "first in file order",
            "rows_read": log.rows,
            "rows_kept": int(keep.size),
            "dropped": dropped,
            "timestamps": log.timestamp is not None,
            "next": "dsl-data split --in DIR --protocol random|temporal|ood-popularity ...",
        }
        return writer.finish(name or out.name, used_u.size, used_i.size, created_by)
