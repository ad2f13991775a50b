"""Importing the office's inputs from CSV or XLSX files (and from rows sent to the API).

    read_table(path) -> (header, rows)            CSV (UTF-8, a BOM allowed) or XLSX, first sheet
    import_rows(engine, kind, rows, ...) -> ImportReport
    import_file(engine, kind, path, ...) -> ImportReport

Row numbers are the file's: the header is row 1, so the first record is row 2
(for the API, the first object of the array is row 1). Every bad row is
reported with its number, column and value; the good rows are stored in
batches, each batch one transaction, so a bad row never takes good rows down
with it. A header that lacks a required column fails the whole file at once,
naming the columns. `progress(done, total)` is called after each batch.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from casework.errors import EsupError
from server.scores.inputs import Kind, RowError, check_rows, store_rows

__all__ = [
    "BATCH",
    "ImportReport",
    "InputFileError",
    "import_file",
    "import_rows",
    "read_table",
    "record_import",
]

#: Rows per transaction.
BATCH = 5_000

Progress = Callable[[int, int], None]


class InputFileError(EsupError, ValueError):
    """A file that cannot be imported at all: unreadable, an unknown format, a bad header."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


@dataclass
class ImportReport:
    """What an import did: rows read, rows stored (inserted or replaced), every bad row."""

    kind: str
    rows: int = 0
    stored: int = 0
    errors: list[RowError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "stored": self.stored,
            "rejected": len({e.row for e in self.errors}),
            "errors": [e.to_json() for e in self.errors],
        }


def record_import(
    engine: Engine, report: ImportReport, *, actor: str, source: str, at: datetime
) -> None:
    """Write the import to the audit trail: who, when, from where, how many rows went in."""
    from server.scores import audit

    rejected = len({e.row for e in report.errors})
    with engine.begin() as connection:
        audit.record(
            connection,
            at=at,
            actor=actor,
            action="inputs_imported",
            subject=f"import:{report.kind}",
            detail=f"{source}: {report.rows} rows, {report.stored} stored, {rejected} rejected",
        )


def _csv_rows(path: Path) -> tuple[list[str], Generator[list[Any], None, None], int]:
    handle = path.open(encoding="utf-8-sig", newline="")
    try:
        total = max(sum(1 for _ in handle) - 1, 0)
        handle.seek(0)
    except UnicodeDecodeError:
        handle.close()
        raise InputFileError(str(path), "is not UTF-8 text; save the CSV as UTF-8") from None
    reader = csv.reader(handle)
    header = next(reader, [])

    def rows() -> Generator[list[Any], None, None]:
        try:
            yield from reader
        finally:
            handle.close()

    return header, rows(), total


def _xlsx_rows(path: Path) -> tuple[list[str], Generator[list[Any], None, None], int]:
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file it cannot read
        raise InputFileError(str(path), f"cannot be read as an XLSX workbook ({exc})") from exc
    sheet = book.worksheets[0]
    total = max((sheet.max_row or 1) - 1, 0)
    values = sheet.iter_rows(values_only=True)
    header = [str(v).strip() if v is not None else "" for v in next(values, ())]

    def rows() -> Generator[list[Any], None, None]:
        try:
            for row in values:
                yield list(row)
        finally:
            book.close()

    return header, rows(), total


def read_table(path: Path) -> tuple[list[str], Generator[list[Any], None, None], int]:
    """(header, data rows, data row count as far as known) of a CSV or XLSX file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(str(path), "there is no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_rows(path)
    raise InputFileError(str(path), f"has the extension {suffix!r}; give a .csv or .xlsx file")


def import_rows(
    engine: Engine,
    kind: Kind,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    departments: set[str],
    platforms: Sequence[str],
    now: datetime,
    total: int = 0,
    progress: Progress | None = None,
) -> ImportReport:
    """Check and store (number, cells) rows in batches; the report lists every bad row."""
    report = ImportReport(kind.name)
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        good, errors = check_rows(kind, batch, departments, platforms)
        with engine.begin() as connection:
            report.stored += store_rows(connection, kind, good, now)
        report.rows += len(batch)
        report.errors.extend(errors)
        if progress is not None:
            progress(report.rows, max(total, report.rows))
    return report


def import_file(
    engine: Engine,
    kind: Kind,
    path: Path,
    *,
    departments: set[str],
    platforms: Sequence[str],
    now: datetime,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a CSV or XLSX file of `kind` (header row first); see the module docstring."""
    header, rows, total = read_table(path)
    missing = [c for c in kind.required if c not in header]
    if missing:
        rows.close()
        raise InputFileError(
            str(path),
            f"the header lacks the column(s) {', '.join(missing)}; a {kind.name} file has "
            f"the columns {', '.join(kind.columns)} (got {', '.join(header) or 'no header'})",
        )
    numbered = (
        (number, dict(zip(header, row, strict=False)))
        for number, row in enumerate(rows, start=2)
        if any(v not in (None, "") for v in row)
    )
    return import_rows(
        engine,
        kind,
        numbered,
        departments=departments,
        platforms=platforms,
        now=now,
        total=total,
        progress=progress,
    )
