"""The one exception type of the data package."""

from __future__ import annotations

from os import PathLike


class DataError(ValueError):
    """Bad or missing input data.

    The message always starts with the file, then the place in it (line, row or field) and says
    what was expected, e.g. ``train.tsv:17: non-numeric id 'x1' (expected a non-negative integer
    id)``, so the CLI can print it as-is.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        problem: str,
        *,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.row = row
        self.field = field
        self.problem = problem
        self.expected = expected
        self.hint = hint
        where = self.path if line is None else f"{self.path}:{line}"
        if row is not None:
            where += f" row {row}"
        if field is not None:
            where += f" field {field!r}"
        msg = f"{where}: {problem}"
        if expected is not None:
            msg += f" (expected {expected})"
        if hint is not None:
            msg += f"; {hint}"
        super().__init__(msg)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Keyword-only arguments defeat the default exception pickling (multiprocessing).
        return _rebuild, (self.path, self.problem, self.line, self.row, self.field,
                          self.expected, self.hint)


def _rebuild(path: str, problem: str, line: int | None, row: int | None, field: str | None,
             expected: str | None, hint: str | None) -> DataError:
    return DataError(path, problem, line=line, row=row, field=field, expected=expected, hint=hint)
