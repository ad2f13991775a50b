"""Importing the office's inputs from CSV and XLSX, on SQLite and PostgreSQL: every bad row
named by row, column and value while the good rows go in; re-importing changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import Engine, Table, func, select

from server.scores.importer import ImportReport, InputFileError, import_file
from server.scores.inputs import KINDS
from server.scores.rules import PLATFORMS
from server.store.scoretables import score_findings, score_satisfaction

NOW = datetime(2026, 1, 5, tzinfo=UTC)
DEPARTMENTS = {"fgw", "jw", "sw"}


def run(engine: Engine, kind: str, path: Path) -> ImportReport:
    return import_file(
        engine, KINDS[kind], path, departments=DEPARTMENTS, platforms=PLATFORMS, now=NOW
    )


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


SATISFACTION_CSV = """\ufeffdepartment,month,platform,satisfied,basically_satisfied,dissatisfied
fgw,2025-01,hotline_12345,90,5,5
fgw,2025-13,hotline_12345,90,5,5
jw,2025-01,radio,1,2,3
sw,2025-01,media,10,x,0
sw,2025-02,media,10,0,0
"""


def test_csv_errors_name_row_column_and_value(migrated: Engine, tmp_path: Path) -> None:
    path = tmp_path / "sat.csv"
    path.write_text(SATISFACTION_CSV, encoding="utf-8")
    report = run(migrated, "satisfaction", path)
    assert [(e.row, e.column, e.value) for e in report.errors] == [
        (3, "month", "2025-13"),
        (4, "platform", "radio"),
        (5, "basically_satisfied", "x"),
    ]
    assert "row 4, column 'platform'" in str(report.errors[1])
    assert (report.rows, report.stored) == (5, 2)
    # Importing the same file again leaves the same two records.
    run(migrated, "satisfaction", path)
    assert count(migrated, score_satisfaction) == 2


def test_reimport_replaces_by_natural_key(migrated: Engine, tmp_path: Path) -> None:
    path = tmp_path / "inspections.csv"
    path.write_text(
        "record_id,department,date,points,description\nI-1,fgw,2025-03-01,2,迟到\n",
        encoding="utf-8",
    )
    run(migrated, "inspections", path)
    path.write_text(
        "record_id,department,date,points,description\nI-1,fgw,2025-03-01,1.5,迟到（复核）\n",
        encoding="utf-8",
    )
    run(migrated, "inspections", path)
    with migrated.connect() as connection:
        rows = connection.execute(select(score_findings.c.points, score_findings.c.kind)).all()
    assert [(Decimal(p), k) for p, k in rows] == [(Decimal("1.5"), "inspection")]


def test_xlsx_with_a_bonus_lacking_its_approval(migrated: Engine, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["record_id", "department", "date", "points", "approval_ref", "description"])
    sheet.append(["B-1", "jw", datetime(2025, 5, 1), 2, "考评〔2025〕1号", "先进"])
    sheet.append(["B-2", "jw", datetime(2025, 5, 2), 2, None, "no approval"])
    sheet.append(["B-3", "fgw", "2025-05-03", 1.25, "考评〔2025〕2号", None])
    path = tmp_path / "bonuses.xlsx"
    book.save(path)
    report = run(migrated, "bonuses", path)
    assert [(e.row, e.column, e.value) for e in report.errors] == [(3, "approval_ref", None)]
    assert report.stored == 2


def test_a_header_lacking_a_column_fails_the_file(migrated: Engine, tmp_path: Path) -> None:
    path = tmp_path / "superior.csv"
    path.write_text("department,score\nfgw,90\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="lacks the column\\(s\\) period"):
        run(migrated, "superior", path)
    (tmp_path / "x.txt").write_text("department,period,score\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"give a \.csv or \.xlsx"):
        run(migrated, "superior", tmp_path / "x.txt")


def test_progress_is_reported_batch_by_batch(
    migrated: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.scores.importer.BATCH", 2)
    path = tmp_path / "head.csv"
    lines = [f"H-{n},fgw,2025-0{n}-01,complaint {n}" for n in range(1, 6)]
    path.write_text("record_id,department,date,description\n" + "\n".join(lines) + "\n",
                    encoding="utf-8")  # fmt: skip
    seen: list[tuple[int, int]] = []
    report = import_file(
        migrated, KINDS["head_complaints"], path, departments=DEPARTMENTS,
        platforms=PLATFORMS, now=NOW, progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert report.stored == 5
