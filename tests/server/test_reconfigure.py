"""Recomputing cases when the catalog or calendar changes, on SQLite and on PostgreSQL.

The cases are DESIGN.md's worked example: accepted 2018-10-15 10:00 on an item
of promised 7 and legal 10 working days; the changed catalog promises 5.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from casework.events import CaseEvent
from server.cases import CaseProjector, Recomputed
from server.cli import main
from server.reconfigure import (
    FINGERPRINT_KEY,
    RECOMPUTE_LOCK_KEY,
    clock_fingerprint,
    recompute_on_start,
    startup_lock,
)
from server.store import tables
from server.store.events import EventStore
from server.store.state import StateStore

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2018, 10, 23, 12, 0, tzinfo=TZ)

ESUP = "# the test city\ncity: 测试市\ntimezone: Asia/Shanghai\nprocedure_warn_days: 2\n"
DEPARTMENTS = (
    "departments:\n"
    "  - {code: zrzy, name: 市自然资源和规划局, category: government, supervised: true}\n"
)


def catalog(promised: int = 7, *, reordered: bool = False) -> str:
    first = (
        "  - {code: zrzy-001, name: 建设工程规划许可证核发, department: zrzy, kind: approval,\n"
        f"     promised_days: {promised}, legal_days: 10}}\n"
    )
    second = (
        "  # a second item, with a sub-item that inherits its limits\n"
        "  - code: zrzy-002\n"
        "    name: 乡村建设规划许可证核发\n"
        "    department: zrzy\n"
        "    kind: approval\n"
        "    promised_days: 10\n"
        "    legal_days: 20\n"
        "    sub_items:\n"
        "      - {code: zrzy-002-01, name: 乡村建设规划许可证核发（新建）}\n"
    )
    return "items:\n" + (second + first if reordered else first + second)


def calendar(holidays: Sequence[str]) -> str:
    return "# single-date overrides\nholidays:\n" + "".join(f"  - {d}\n" for d in holidays)


def write_config(
    directory: Path, *, promised: int = 7, holidays: Sequence[str] | None = None, **kw: Any
) -> Path:
    """A small configuration directory; `reordered=True` reorders the catalog's items."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "esup.yaml").write_text(ESUP, encoding="utf-8")
    (directory / "departments.yaml").write_text(DEPARTMENTS, encoding="utf-8")
    (directory / "catalog.yaml").write_text(catalog(promised, **kw), encoding="utf-8")
    days = ("2018-11-02", "2018-12-28") if holidays is None else holidays
    (directory / "calendar.yaml").write_text(calendar(days), encoding="utf-8")
    return directory


def projector(deployment: Deployment, engine: Engine, *, batch_size: int = 1000) -> CaseProjector:
    clock = Clock.for_deployment(deployment)
    return CaseProjector(engine, clock, deployment, now=lambda: NOW, batch_size=batch_size)


def ev(case_id: str, n: int, type_: str, at: datetime, **fields: Any) -> CaseEvent:
    return CaseEvent(
        event_id=f"{case_id}-{n}",
        case_id=case_id,
        department="zrzy",
        item="zrzy-001",
        type=type_,  # type: ignore[arg-type]
        at=at,
        **fields,
    )


def seed(engine: Engine, cases: CaseProjector, open_cases: int = 3) -> None:
    """`open_cases` open cases and one closed case C, completed 2018-10-23 09:00."""
    accepted_at = datetime(2018, 10, 15, 10, 0, tzinfo=TZ)
    events = [ev(f"O{n}", 1, "accepted", accepted_at) for n in range(open_cases)]
    events.append(ev("C", 1, "accepted", accepted_at))
    completed_at = datetime(2018, 10, 23, 9, 0, tzinfo=TZ)
    events.append(ev("C", 2, "completed", completed_at, result="approved"))
    EventStore(engine).add_batch("agent-1", events)
    cases.refresh({(e.department, e.case_id) for e in events})


def rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        found = connection.execute(select(tables.cases)).mappings()
        return {row["case_id"]: dict(row) for row in found}


# -- the fingerprint ----------------------------------------------------------------------


def test_the_fingerprint_ignores_comments_order_and_names(tmp_path: Path) -> None:
    base = load_config(write_config(tmp_path / "a"))
    other = write_config(tmp_path / "b", reordered=True, holidays=("2018-12-28", "2018-11-02"))
    catalog_file = other / "catalog.yaml"
    text = catalog_file.read_text(encoding="utf-8")
    catalog_file.write_text("# edited by hand\n" + text.replace("（新建）", "（扩建）"), "utf-8")
    (other / "esup.yaml").write_text(ESUP.replace("测试市", "另一市") + "# more\n", "utf-8")
    assert clock_fingerprint(load_config(other)) == clock_fingerprint(base)
    assert len(clock_fingerprint(base)) == 64


def test_the_fingerprint_changes_with_a_limit_a_holiday_or_the_zone(tmp_path: Path) -> None:
    base = clock_fingerprint(load_config(write_config(tmp_path / "a")))
    limit = load_config(write_config(tmp_path / "b", promised=5))
    holiday = load_config(write_config(tmp_path / "c", holidays=("2018-11-02",)))
    zone_dir = write_config(tmp_path / "d")
    (zone_dir / "esup.yaml").write_text(ESUP.replace("Shanghai", "Urumqi"), "utf-8")
    warn_dir = write_config(tmp_path / "e")
    (warn_dir / "esup.yaml").write_text(ESUP + "warn_days: 3\n", "utf-8")  # items inherit it
    fingerprints = {
        base,
        *(clock_fingerprint(d) for d in (limit, holiday, load_config(zone_dir))),
        clock_fingerprint(load_config(warn_dir)),
    }
    assert len(fingerprints) == 5


# -- on start --------------------------------------------------------------------------------


def test_a_changed_limit_recomputes_open_cases_on_start_and_keeps_closed_ones(
    migrated: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = load_config(write_config(tmp_path / "before"))
    cases = projector(before, migrated)
    seed(migrated, cases)
    # The database predates fingerprints: cases exist, none is stored; nothing changes.
    assert recompute_on_start(cases, clock_fingerprint(before)) == Recomputed(1, 3, 0, 0)
    assert StateStore(migrated).get(FINGERPRINT_KEY) == clock_fingerprint(before)
    old = rows(migrated)
    assert {old[f"O{n}"]["level"] for n in range(3)} == {"warning"}
    assert old["C"]["timeliness"] == "early"

    after = load_config(write_config(tmp_path / "after", promised=5))
    cases = projector(after, migrated, batch_size=2)
    with caplog.at_level(logging.INFO, logger="server.reconfigure"):
        done = recompute_on_start(cases, clock_fingerprint(after), progress_every=1)
    assert done == Recomputed(batches=2, looked_at=3, changed=3, closed_changed=0)
    new = rows(migrated)
    assert {new[f"O{n}"]["level"] for n in range(3)} == {"yellow"}
    assert new["C"] == old["C"]  # closed: kept as it was
    assert StateStore(migrated).get(FINGERPRINT_KEY) == clock_fingerprint(after)
    messages = [r.getMessage() for r in caplog.records]
    assert any("2/3 cases after 1 batches" in m for m in messages)
    assert any("3/3 cases after 2 batches, 3 changed" in m for m in messages)


def test_an_unchanged_configuration_recomputes_nothing(migrated: Engine, tmp_path: Path) -> None:
    deployment = load_config(write_config(tmp_path / "config"))
    calls: list[bool] = []

    class Spy(CaseProjector):
        def recompute(self, *, open_only: bool = True, **kw: Any) -> int:
            calls.append(open_only)
            return super().recompute(open_only=open_only, **kw)

    cases = Spy(migrated, Clock.for_deployment(deployment), deployment, now=lambda: NOW)
    fingerprint = clock_fingerprint(deployment)
    # A new database: no cases, so the fingerprint is just stored.
    assert recompute_on_start(cases, fingerprint) is None
    assert StateStore(migrated).get(FINGERPRINT_KEY) == fingerprint
    seed(migrated, cases)
    stamped = {k: r["updated_at"] for k, r in rows(migrated).items()}
    assert recompute_on_start(cases, fingerprint) is None
    assert calls == []
    assert {k: r["updated_at"] for k, r in rows(migrated).items()} == stamped


def test_only_the_server_holding_the_lock_recomputes(
    migrated: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if migrated.dialect.name != "postgresql":
        with startup_lock(migrated)() as got:  # SQLite: one server, always granted
            assert got
        return
    before = load_config(write_config(tmp_path / "before"))
    seed(migrated, projector(before, migrated))
    after = load_config(write_config(tmp_path / "after", promised=5))
    cases = projector(after, migrated)
    with migrated.connect() as other:  # another server, recomputing
        assert other.execute(select(func.pg_try_advisory_lock(RECOMPUTE_LOCK_KEY))).scalar_one()
        with caplog.at_level(logging.INFO, logger="server.reconfigure"):
            assert recompute_on_start(cases, clock_fingerprint(after)) is None
        assert "another server holds the recompute lock" in caplog.text
        assert StateStore(migrated).get(FINGERPRINT_KEY) is None
        other.execute(select(func.pg_advisory_unlock(RECOMPUTE_LOCK_KEY)))
    assert recompute_on_start(cases, clock_fingerprint(after)) == Recomputed(1, 3, 3, 0)
    with startup_lock(migrated)() as got:  # released after use
        assert got


# -- the operator's command ---------------------------------------------------------------


def test_recompute_closed_changes_a_closed_case_and_logs_before_and_after(
    migrated: Engine, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = load_config(write_config(tmp_path / "before"))
    seed(migrated, projector(before, migrated))
    write_config(tmp_path / "after", promised=5)
    settings = tmp_path / "server.yaml"
    settings.write_text(f"database: {database_url}\nconfig_dir: after\n", encoding="utf-8")

    out = io.StringIO()
    assert main(["recompute", "--config", str(settings)], stdout=out) == 0
    assert "Recomputed the open cases: 3 looked at, 3 changed, 0 of them closed." in out.getvalue()
    assert rows(migrated)["C"]["timeliness"] == "early"

    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="server.cases"):
        assert main(["recompute", "--config", str(settings), "--closed"], stdout=out) == 0
    assert "Recomputed every case: 4 looked at, 1 changed, 1 of them closed." in out.getvalue()
    assert rows(migrated)["C"]["timeliness"] == "late"
    logged = [r.getMessage() for r in caplog.records if "closed case" in r.getMessage()]
    assert len(logged) == 1
    assert "zrzy/C" in logged[0]
    assert "'early', 'late'" in logged[0]
    after = load_config(tmp_path / "after")
    assert StateStore(migrated).get(FINGERPRINT_KEY) == clock_fingerprint(after)
