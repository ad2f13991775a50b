"""The evaluation office's inputs for the demo: seeded, plausible, for every department.

    evaluation_inputs(deployment, year, seed) -> {kind: [row, ...]}

The kinds and columns are docs/scores.md's ("The inputs"), as the server's
``POST /api/v1/scores/inputs/{kind}`` takes them: satisfaction answers of the
six platforms per department and month, the superior departments' and the
service users' scores of the year, a few inspection findings and
administrative faults, one veto, a few bonuses with their approval
references, and valid complaints against staff and department heads.
Each department gets a "quality" drawn once, so its satisfaction and scores
go together, as they do in a real city.
"""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from typing import Any, Final

from casework.config import Deployment

__all__ = ["KINDS_IN_ORDER", "PLATFORMS", "evaluation_inputs"]

#: The six platforms of config/scores.yaml's defaults.
PLATFORMS: Final = (
    "hotline_12345",
    "livelihood_hotline",
    "petitions_bureau",
    "complaint_centre",
    "service_centre",
    "media",
)
#: The order the demo posts them in.
KINDS_IN_ORDER: Final = (
    "satisfaction",
    "superior",
    "service_users",
    "inspections",
    "faults",
    "vetoes",
    "bonuses",
    "staff_complaints",
    "head_complaints",
)

_INSPECTION_FINDINGS: Final = (
    "窗口人员脱岗",
    "未执行一次性告知",
    "办事指南与实际要求不一致",
    "超时未回复咨询",
)
_FAULTS: Final = ("违规收取材料费", "擅自增加申请材料", "未按规定公开办理结果")
_BONUSES: Final = ("省级表彰：优化营商环境先进集体", "国务院督查通报表扬", "全省政务服务创新案例")


def _day(rng: random.Random, year: int) -> date:
    return date(year, 1, 1) + timedelta(days=rng.randrange(365))


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """About Binomial(n, p), by its normal approximation, within [0, n]."""
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def evaluation_inputs(deployment: Deployment, year: int, seed: int) -> dict[str, list[Any]]:
    """Every input kind's rows for `year`, for all of `deployment`'s departments."""
    codes = [d.code for d in deployment.departments]
    # A department's quality is its own, the same every year; the rest varies by year.
    drawn = random.Random(f"esup-demo-quality-{seed}")
    rng = random.Random(f"esup-demo-inputs-{seed}-{year}")
    quality = {
        code: min(0.995, max(0.6, drawn.gauss(0.9, 0.05) + rng.gauss(0, 0.01))) for code in codes
    }
    rows: dict[str, list[Any]] = {kind: [] for kind in KINDS_IN_ORDER}
    for code in codes:
        q = quality[code]
        for month in range(1, 13):
            for platform in PLATFORMS:
                answers = rng.randint(20, 400)
                good = _binomial(rng, answers, q)
                satisfied = _binomial(rng, good, 0.8)
                rows["satisfaction"].append(
                    {
                        "department": code,
                        "month": f"{year}-{month:02d}",
                        "platform": platform,
                        "satisfied": satisfied,
                        "basically_satisfied": good - satisfied,
                        "dissatisfied": answers - good,
                    }
                )
        for kind in ("superior", "service_users"):
            score = round(min(100.0, max(50.0, rng.gauss(q * 100, 3))), 1)
            rows[kind].append({"department": code, "period": str(year), "score": score})
    picked = rng.sample(codes, 24)
    for n, code in enumerate(picked[:8], 1):
        rows["inspections"].append(
            {
                "record_id": f"MCAF-{year}-{n:03d}",
                "department": code,
                "date": _day(rng, year).isoformat(),
                "points": rng.choice((0.5, 1, 1.5, 2)),
                "description": rng.choice(_INSPECTION_FINDINGS),
            }
        )
    for n, code in enumerate(picked[8:13], 1):
        rows["faults"].append(
            {
                "record_id": f"XZGC-{year}-{n:03d}",
                "department": code,
                "date": _day(rng, year).isoformat(),
                "points": rng.choice((1, 2, 3)),
                "description": rng.choice(_FAULTS),
            }
        )
    rows["vetoes"].append(
        {
            "record_id": f"YPFJ-{year}-001",
            "department": picked[13],
            "date": _day(rng, year).isoformat(),
            "description": "发生重大安全生产责任事故",
        }
    )
    for n, code in enumerate(picked[14:17], 1):
        rows["bonuses"].append(
            {
                "record_id": f"JF-{year}-{n:03d}",
                "department": code,
                "date": _day(rng, year).isoformat(),
                "points": rng.choice((0.5, 1, 2)),
                "approval_ref": f"市考评办〔{year}〕{10 + n}号",
                "description": rng.choice(_BONUSES),
            }
        )
    # One member of staff with three valid complaints (the ladder's third step),
    # a few with one; two departments' heads with complaints of their own.
    staff = [(picked[17], f"{picked[17]}-0007", 3)] + [
        (code, f"{code}-{rng.randint(1, 60):04d}", 1) for code in picked[18:22]
    ]
    n = 0
    for code, staff_id, count in staff:
        for _ in range(count):
            n += 1
            rows["staff_complaints"].append(
                {
                    "record_id": f"SWZR-{year}-{n:03d}",
                    "staff_id": staff_id,
                    "department": code,
                    "date": _day(rng, year).isoformat(),
                    "description": "首问责任：推诿群众诉求",
                }
            )
    for n, code in enumerate(picked[22:24], 1):
        rows["head_complaints"].append(
            {
                "record_id": f"LDTS-{year}-{n:03d}",
                "department": code,
                "date": _day(rng, year).isoformat(),
                "description": "群众有效投诉",
            }
        )
    return rows
