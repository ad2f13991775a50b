"""A small, known store for the observability tests: cases at every level, rejections, a gap.

    seed_events(now) -> list of wire events (dicts), all before `now`
    seed(client, token, now) -> the ingest answers of the two batches posted
    EXPECTED_OPEN, EXPECTED_CARDS     what the metrics must then say, per department

`client` is any httpx.Client on a server (a FastAPI TestClient or a real
process); `token` an agent token for DEPARTMENTS. Limits are given on each
acceptance, so the levels do not depend on the catalog or on holidays.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

DEPARTMENTS: Final = ("fgw", "jyj")
ITEMS: Final = {"fgw": "fgw-002", "jyj": "jyj-003"}
AGENT: Final = "agent-observed"

#: Open cases by (department, level) once seeded and evaluated at `now`.
EXPECTED_OPEN: Final = {
    ("fgw", "red"): 1,
    ("fgw", "yellow"): 1,
    ("fgw", "warning"): 1,
    ("fgw", "normal"): 1,
    ("jyj", "red"): 1,
    ("jyj", "normal"): 1,
}
#: Cards issued by (department, level): every red case passed warning and yellow.
EXPECTED_CARDS: Final = {
    ("fgw", "warning"): 4,  # red, yellow, warning, late
    ("fgw", "yellow"): 3,  # red, yellow, late
    ("fgw", "red"): 2,  # red, late
    ("jyj", "warning"): 1,
    ("jyj", "yellow"): 1,
    ("jyj", "red"): 1,
}


def _event(
    department: str, case_id: str, n: int, kind: str, at: datetime, **fields: Any
) -> dict[str, Any]:
    return {
        "event_id": f"{case_id}-{n}",
        "case_id": case_id,
        "department": department,
        "item": ITEMS[department],
        "type": kind,
        "at": at.isoformat(),
        **fields,
    }


def seed_events(now: datetime) -> list[dict[str, Any]]:
    """Cases for `now` (aware): red, yellow, warning, normal, early and late in fgw; red in jyj.

    R1 has a step event naming its handler, 张三.
    """
    long_ago = now - timedelta(days=30)
    hour = timedelta(hours=1)
    red = {"promised_days": 1, "legal_days": 2}
    out = [
        _event("fgw", "R1", 1, "accepted", long_ago, **red),
        _event("fgw", "R1", 2, "step", long_ago + hour, step="review", handler="张三"),
        _event("fgw", "Y1", 1, "accepted", long_ago, promised_days=1, legal_days=300),
        _event("fgw", "W1", 1, "accepted", now - hour, promised_days=1, legal_days=300),
        _event("fgw", "N1", 1, "accepted", now - hour, promised_days=30, legal_days=60),
        _event("fgw", "E1", 1, "accepted", now - 3 * hour, promised_days=30, legal_days=60),
        _event("fgw", "E1", 2, "completed", now - 2 * hour, result="approved"),
        _event("fgw", "L1", 1, "accepted", long_ago, **red),
        _event("fgw", "L1", 2, "completed", now - 2 * hour, result="approved"),
        _event("jyj", "R2", 1, "accepted", long_ago, **red),
    ]
    for seq, event in enumerate(out, start=1):
        event["seq"] = seq
        event["source"] = "inbox"
    return out


def seed(client: httpx.Client, token: str, now: datetime) -> list[dict[str, Any]]:
    """Post the seeded cases, then a batch with a gap in `seq` and two rejected events."""
    headers = {"Authorization": f"Bearer {token}"}
    events = seed_events(now)
    first = client.post("/api/v1/events", json=events, headers=headers)
    first.raise_for_status()
    late = _event("jyj", "N2", 1, "accepted", now - timedelta(hours=1), promised_days=30)
    late.update(seq=len(events) + 3, source="inbox")  # two events never arrive
    unknown_item = {**late, "event_id": "bad-1", "item": "no-such-item"}
    lines = [json.dumps(late), json.dumps(unknown_item), '{"event_id": "bad-2"']
    second = client.post(
        "/api/v1/events",
        content="\n".join(lines).encode(),
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    second.raise_for_status()
    return [first.json(), second.json()]
