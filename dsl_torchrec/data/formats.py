"""Readers for the interaction-file formats of public benchmarks, returning (user, item) pairs.

Both readers tokenise the whole file with vectorised numpy byte operations (a 9 MB file takes
well under a second), and only on a problem walk back to the offending byte to report the
1-based line number and the token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np

from .errors import DataError

Pairs = tuple[np.ndarray, np.ndarray]

IRB_HEADER = ("user_procid", "item_procid")
_ID_EXPECTED = "a non-negative integer id"
# Ids above this would not survive int64 parsing safely; no real catalogue is near it.
_MAX_DIGITS = 18

_DIGITS = np.zeros(256, dtype=bool)
_DIGITS[ord("0") : ord("9") + 1] = True


def _allowed(whitespace: bytes) -> np.ndarray:
    table = _DIGITS.copy()
    table[list(whitespace)] = True
    return table


_LIGHTGCN_OK = _allowed(b" \t\r\n")
_IRB_OK = _allowed(b"\t\r\n")


def read_bytes(path: Path, what: str = "an interaction file") -> bytes:
    """The whole file, or a DataError naming it when it is missing or a directory."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory", expected=what) from None


def _token_at(data: bytes, pos: int) -> tuple[str, int]:
    """The whitespace-delimited token around byte ``pos`` and its 1-based line number."""
    line = data.count(b"\n", 0, pos) + 1
    start = pos
    while start > 0 and data[start - 1 : start] not in (b" ", b"\t", b"\n", b"\r"):
        start -= 1
    end = pos
    while end < len(data) and data[end : end + 1] not in (b" ", b"\t", b"\n", b"\r"):
        end += 1
    return data[start:end].decode("utf-8", errors="replace"), line


def _bad_byte(path: Path, data: bytes, pos: int, *, tabs_only: bool, line_offset: int) -> DataError:
    token, line = _token_at(data, pos)
    line += line_offset
    if tabs_only and data[pos : pos + 1] == b" ":
        return DataError(path, "space inside a line", line=line, expected="tab-separated fields")
    if re.fullmatch(r"-\d+", token):
        return DataError(path, f"negative id {token!r}", line=line, expected=_ID_EXPECTED)
    return DataError(path, f"non-numeric id {token!r}", line=line, expected=_ID_EXPECTED)


def _tokenize(data: bytes, path: Path, allowed: np.ndarray, line_offset: int) -> Pairs:
    """All integer tokens of ``data`` and the 1-based file line of each.

    Returns (values int64 [T], lines int64 [T]); ``line_offset`` is added to the line numbers
    (1 when a header line was cut off before).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ok = allowed[buf]
    if not ok.all():
        raise _bad_byte(path, data, int(np.argmin(ok)), tabs_only=not allowed[ord(" ")],
                        line_offset=line_offset)
    is_digit = _DIGITS[buf]
    starts = is_digit.copy()
    starts[1:] &= ~is_digit[:-1]
    ends = is_digit.copy()
    ends[:-1] &= ~is_digit[1:]
    start_pos = np.flatnonzero(starts)
    lengths = np.flatnonzero(ends) - start_pos + 1
    if lengths.size and int(lengths.max()) > _MAX_DIGITS:
        token, line = _token_at(data, int(start_pos[np.argmax(lengths)]))
        raise DataError(path, f"id {token!r} is too large", line=line + line_offset,
                        expected=f"an id of at most {_MAX_DIGITS} digits")
    if start_pos.size == 0:  # blank or whitespace-only
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Every byte is a digit or whitespace here, so numpy's C parser sees only clean tokens.
    values = np.fromstring(data, dtype=np.int64, sep=" ")
    if values.size != start_pos.size:  # cannot happen on validated bytes; never return garbage
        raise DataError(path, "could not parse the file as integer tokens")
    newline_count = np.cumsum(buf == ord("\n"), dtype=np.int64)
    lines = newline_count[start_pos] + 1 + line_offset
    return values, lines


def _group_lines(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each line's first token [L], tokens per line [L]) for non-blank lines."""
    if lines.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.ones(lines.size, dtype=bool)
    first[1:] = lines[1:] != lines[:-1]
    heads = np.flatnonzero(first)
    counts = np.diff(np.append(heads, lines.size))
    return heads, counts


Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


def read_lightgcn(path: str | PathLike[str]) -> Pairs:
    """Read a LightGCN/NGCF txt file: one line ``user item item ...`` per user.

    A line with a user and no items is fine, and so are blank lines. Returns
    (users int64 [N], items int64 [N]) in file order.
    """
    users, items, _ = _lightgcn_lines(path)
    return users, items


def _lightgcn_lines(path: str | PathLike[str]) -> Triples:
    path = Path(path)
    data = read_bytes(path)
    values, lines = _tokenize(data, path, _LIGHTGCN_OK, 0)
    heads, counts = _group_lines(lines)
    users = np.repeat(values[heads], counts - 1)
    is_item = np.ones(values.size, dtype=bool)
    is_item[heads] = False
    return users, values[is_item], lines[is_item]


def read_irb(path: str | PathLike[str]) -> Pairs:
    """Read an IR-Benchmark tsv: header ``user_procid<TAB>item_procid``, then one pair per line.

    Blank lines are skipped. Returns (users int64 [N], items int64 [N]) in file order.
    """
    users, items, _ = _irb_lines(path)
    return users, items


def _irb_lines(path: str | PathLike[str]) -> Triples:
    path = Path(path)
    data = read_bytes(path)
    newline = data.find(b"\n")
    header, body = (data, b"") if newline < 0 else (data[:newline], data[newline + 1 :])
    text = header.decode("utf-8", errors="replace").rstrip("\r")
    if tuple(text.split("\t")) != IRB_HEADER:
        raise DataError(path, f"bad header {text!r}", line=1,
                        expected="the header 'user_procid<TAB>item_procid'")
    values, lines = _tokenize(body, path, _IRB_OK, 1)
    heads, counts = _group_lines(lines)
    wrong = counts != 2
    if wrong.any():
        k = int(np.argmax(wrong))
        raise DataError(path, f"{int(counts[k])} field(s) on the line", line=int(lines[heads[k]]),
                        expected="2 tab-separated fields: user_procid, item_procid")
    return values[0::2].copy(), values[1::2].copy(), lines[0::2].copy()


READERS: dict[str, Callable[[str | PathLike[str]], Pairs]] = {
    "lightgcn": read_lightgcn,
    "irb": read_irb,
}


def read_pairs(fmt: str, path: str | PathLike[str]) -> Pairs:
    """Dispatch to the reader of ``fmt`` (one of ``READERS``)."""
    try:
        reader = READERS[fmt]
    except KeyError:
        raise DataError(path, f"unknown format {fmt!r}",
                        expected="one of " + ", ".join(sorted(READERS))) from None
    return reader(path)


def read_pairs_lines(fmt: str, path: str | PathLike[str]) -> Triples:
    """Like ``read_pairs`` plus the 1-based file line of each pair: int64 [N]."""
    read_pairs(fmt, path) if fmt not in READERS else None  # the unknown-format error
    return {"lightgcn": _lightgcn_lines, "irb": _irb_lines}[fmt](path)
