"""The scoring feed: a period's `Scores` as CSV and as an XLSX workbook (JSON is `to_json`).

    to_csv(scores) -> str            one row per department, Chinese headers
    read_csv(text) -> [dict]         the CSV back, numbers as Decimal (for checks and tools)
    to_xlsx(scores) -> bytes         one sheet per category (rank, parts, final, rating,
                                     flags), 扣分依据 (every deduction's evidence),
                                     个人问责 (staff on the complaint ladder)

Every sheet has a frozen header row and column widths that fit Chinese text.
The figures are the JSON's: the same Decimal values, written as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Final

from server.scores.results import DepartmentScore, Scores
from server.scores.rules import RATINGS

__all__ = [
    "CATEGORY_SHEETS",
    "COLUMNS",
    "EVIDENCE_SHEET",
    "FLAG_LABELS",
    "STAFF_SHEET",
    "read_csv",
    "to_csv",
    "to_xlsx",
]

CATEGORY_SHEETS: Final = {
    "government": "政府部门",
    "party_mass": "党群部门",
    "stationed": "驻市单位",
}
EVIDENCE_SHEET: Final = "扣分依据"
STAFF_SHEET: Final = "个人问责"
PART_LABELS: Final = {
    "platforms": "六大平台评价",
    "superior": "上级对口部门评价",
    "service_users": "服务对象评价",
    "esupervision": "电子监察扣分",
    "inspections": "明察暗访扣分",
    "faults": "行政过错扣分",
    "bonuses": "加分",
}
FLAG_LABELS: Final = {
    "vetoed": "一票否决",
    "admonishment": "诫勉谈话",
    "leadership_adjustment": "调整领导班子",
    "head_personal_apology": "负责人当面道歉",
    "head_public_apology": "负责人公开道歉",
    "missing_platforms": "缺六大平台评价",
    "missing_superior": "缺上级评价",
    "missing_service_users": "缺服务对象评价",
}
#: (header, key) of a department row; the parts follow the category's order.
COLUMNS: Final = (
    ("类别", "category"),
    ("排名", "rank"),
    ("部门代码", "department"),
    ("部门名称", "name"),
    *((label, key) for key, label in PART_LABELS.items()),
    ("最终得分", "final"),
    ("评价等次", "rating"),
    ("增幅%", "growth_percent"),
    ("标记", "flags"),
)
EVIDENCE_HEADER: Final = (
    "部门代码", "部门名称", "扣分项", "办件编号/记录编号", "牌级", "时间/日期", "分值", "说明",
)  # fmt: skip
_NUMERIC = {"rank", "final", "growth_percent", *PART_LABELS}


def _row(d: DepartmentScore) -> dict[str, Any]:
    row: dict[str, Any] = {
        "category": CATEGORY_SHEETS[d.category],
        "rank": d.rank,
        "department": d.code,
        "name": d.name,
        "final": d.final,
        "rating": RATINGS[d.rating],
        "growth_percent": d.growth_percent,
        "flags": "；".join(FLAG_LABELS.get(f, f) for f in d.flags),
    }
    row.update((p.key, p.points) for p in d.parts)
    return row


def _ordered(scores: Scores) -> list[DepartmentScore]:
    order = list(CATEGORY_SHEETS)
    return sorted(scores.departments, key=lambda d: (order.index(d.category), d.rank, d.code))


def to_csv(scores: Scores) -> str:
    """One row per department, by category and rank; UTF-8 text with Chinese headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header for header, _ in COLUMNS])
    for d in _ordered(scores):
        row = _row(d)
        writer.writerow(["" if row[key] is None else str(row[key]) for _, key in COLUMNS])
    return out.getvalue()


def read_csv(text: str) -> list[dict[str, Any]]:
    """The rows of `to_csv` keyed as in JSON (``final``, ``esupervision``...), numbers Decimal."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader)
    keys = dict(COLUMNS)
    out = []
    for cells in reader:
        if not cells:
            continue
        row: dict[str, Any] = {}
        for title, cell in zip(header, cells, strict=True):
            key = keys[title]
            if key in _NUMERIC:
                row[key] = None if cell == "" else Decimal(cell)
            else:
                row[key] = cell
        out.append(row)
    return out


def _evidence_rows(scores: Scores) -> Iterator[list[Any]]:
    for d in _ordered(scores):
        for p in d.parts:
            for e in p.evidence:
                head = [d.code, d.name, PART_LABELS[p.key]]
                if p.key == "esupervision":
                    yield [*head, e["case_id"], e["level"], e["reached_at"], None, None]
                else:
                    note = e.get("approval_ref") or e.get("description")
                    yield [*head, e["record_id"], None, e["day"], float(e["points"]), note]


_WIDTH_CJK = 2.1


def _width(value: Any) -> float:
    text = "" if value is None else str(value)
    return sum(_WIDTH_CJK if ord(ch) > 0x2E7F else 1.1 for ch in text) + 2


def _sheet(book: Any, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from openpyxl.styles import Font  # type: ignore[import-untyped]
    from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

    sheet = book.create_sheet(title)
    sheet.append(list(header))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([float(v) if isinstance(v, Decimal) else v for v in row])
    sheet.freeze_panes = "A2"
    for i, title_ in enumerate(header, start=1):
        sample = [title_, *(r[i - 1] for r in rows[:500])]
        sheet.column_dimensions[get_column_letter(i)].width = min(
            max(_width(v) for v in sample), 60
        )


def to_xlsx(scores: Scores) -> bytes:
    """The workbook the evaluation office hands to its leaders (see the module docstring)."""
    from openpyxl import Workbook  # type: ignore[import-untyped]

    book = Workbook()
    book.remove(book.active)
    columns = [(h, k) for h, k in COLUMNS if k != "category"]
    ordered = _ordered(scores)
    for category, title in CATEGORY_SHEETS.items():
        rows = [[_row(d)[k] for _, k in columns] for d in ordered if d.category == category]
        _sheet(book, f"{title} {scores.period}", [h for h, _ in columns], rows)
    _sheet(
        book,
        EVIDENCE_SHEET,
        [
            "部门代码",
            "部门名称",
            "扣分项",
            "办件编号/记录编号",
            "牌级",
            "时间/日期",
            "分值",
            "说明",
        ],
        list(_evidence_rows(scores)),
    )
    _sheet(
        book,
        STAFF_SHEET,
        ["工作人员编号", "部门代码", "有效投诉次数", "投诉记录", "处理"],
        [
            [s.staff_id, s.department, s.complaints, "、".join(s.records), s.label]
            for s in scores.staff
        ],
    )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
