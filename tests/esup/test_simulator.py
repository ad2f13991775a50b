"""The workflow simulator: reproducible, realistic, and its figures exact.

The expected figures the simulator states are checked against a count made
here from the files it wrote (read back with casework.wire, counted the way
tests/server/test_figures.py's `expected_counts` counts), and against the
server's own ingest, projector and figures fed those files in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from figurecount import independent_counts
from sqlalchemy import Engine

from casework.batches import iter_json_lines, parse_batch
from casework.clock import Clock
from casework.config import Deployment
from casework.configfiles import load_config
from casework.errors import EventError
from casework.events import SUSPEND_REASONS, CaseEvent
from casework.wire import parse_json_line
from esup.cli import main
from esup.dropfolders import DropFile, department_groups, temp_name, write_files
from esup.simfaults import Faults
from esup.simulation import SUMMARY_FILE, Simulation, simulate
from esup.simulator import HORIZON, REFERENCE_SHAPE, SimulationError, YearShape

NDJSON = "application/x-ndjson"
CONFIG = Path(__file__).resolve().parents[2] / "config"
SMALL = YearShape.scaled(0.03)
Y2025 = (date(2025, 1, 1), date(2026, 1, 1))


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def small(deployment: Deployment) -> Simulation:
    return simulate(deployment, seed=7, shape=SMALL)


@pytest.fixture(scope="module")
def written(small: Simulation, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("year")
    return out, small.write(out)


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def read_back(out: Path, summary: dict[str, Any]) -> list[tuple[str, int, CaseEvent | EventError]]:
    """Every line of every folder's files, in time order (file name, then folder)."""
    files = sorted(
        (p for folder in summary["folders"] for p in (out / folder).glob("*.jsonl")),
        key=lambda p: (p.name, list(summary["folders"]).index(p.parent.name)),
    )
    lines = []
    for path in files:
        relative = f"{path.parent.name}/{path.name}"
        text = path.read_text("utf-8").splitlines()  # lines without their ends, as ingest splits
        lines += [(relative, n, r) for n, r in iter_json_lines(text, source=relative)]
    return lines


# -- shape --------------------------------------------------------------------------------


def test_the_reference_shape_and_its_scaling() -> None:
    assert YearShape.scaled(1) == REFERENCE_SHAPE == YearShape(22_746, 6_630, 28_260)
    assert REFERENCE_SHAPE.open_at_end == 1_116
    rate = REFERENCE_SHAPE.completion_rate
    assert rate is not None
    assert round(rate * 100, 1) == 96.2
    assert YearShape.scaled(0.1) == YearShape(2_275, 663, 2_826)
    assert YearShape.scaled(0.03) == YearShape(682, 199, 848)
    for scale in (0.01, 0.1, 0.5):  # the same shape, within rounding
        shape = YearShape.scaled(scale)
        assert shape.completion_rate is not None
        assert abs(shape.completion_rate - rate) < 0.002
    with pytest.raises(SimulationError, match="scale must be a number in"):
        YearShape.scaled(0)
    with pytest.raises(SimulationError, match="more than the cases there are"):
        YearShape(10, 5, 16)
    with pytest.raises(SimulationError, match="received must be a whole number"):
        YearShape(-1, 0, 0)


def test_the_full_year_comes_out_exactly(deployment: Deployment) -> None:
    """The reference city's year, full size, counted with esup's clock and definitions."""
    sim = simulate(deployment, seed=1)
    total = sim.figures.total
    assert (total["received"], total["carried_over"], total["completed"]) == (
        22_746,
        6_630,
        28_260,
    )
    assert total["open_at_end"] == 1_116
    rates = sim.figures.rates(total)["completion_rate"]
    assert (rates["numerator"], rates["denominator"]) == (28_260, 29_376)
    assert isinstance(rates["value"], float)
    assert round(rates["value"] * 100, 1) == 96.2
    departments = {d.code for d in deployment.supervised_departments()}
    assert set(sim.figures.departments) == departments  # all 43 have cases
    assert len(departments) == 43


# -- reproducibility ------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(
    deployment: Deployment, small: Simulation, written: tuple[Path, Any], tmp_path: Path
) -> None:
    again = simulate(deployment, seed=7, shape=SMALL)
    again.write(tmp_path / "again")
    first = tree(written[0])
    assert tree(tmp_path / "again") == first
    other = simulate(deployment, seed=8, shape=SMALL)
    other.write(tmp_path / "other")
    assert tree(tmp_path / "other") != first
    # The other seed has the same shape.
    assert other.figures.total["received"] == small.figures.total["received"]
    assert other.figures.total["completed"] == small.figures.total["completed"]


# -- what it writes -------------------------------------------------------------------------


def test_every_good_line_parses_and_every_case_evaluates(
    deployment: Deployment, written: tuple[Path, Any]
) -> None:
    out, summary = written
    lines = read_back(out, summary)
    assert len(lines) == summary["lines"]
    errors = [(f, n, r.reason) for f, n, r in lines if isinstance(r, EventError)]
    expected = [
        (f"{m['folder']}/{m['file']}", m["line"], m["reason"])
        for m in summary["malformed"]
        if m["rejected_by"] == "wire"
    ]
    assert sorted(errors) == sorted(expected)
    assert len(errors) == 6  # 3 cut short, 3 missing a field
    good = [r for _, _, r in lines if isinstance(r, CaseEvent)]
    unknown = [e for e in good if not _known(deployment, e.item)]
    assert [e.case_id for e in unknown] == [
        m["case_id"] for m in summary["malformed"] if m["rejected_by"] == "ingest"
    ]
    clock = Clock.for_deployment(deployment)
    now = datetime.fromisoformat(summary["now"])
    cases: dict[tuple[str, str], list[CaseEvent]] = {}
    for event in good:
        if event not in unknown:
            assert event.at < now
            cases.setdefault(event.case_key, []).append(event)
    contradictory = {(c["department"], c["case_id"]) for c in summary["contradictory"]}
    states = Counter()
    for key, history in cases.items():
        result = clock.evaluate(history, deployment.limits(history[0].item), now)
        states[result.state] += 1
        if key not in contradictory:
            assert result.state in ("open", "closed"), key
            assert not result.anomalies, key
    assert states["invalid"] == 3  # the orphan completions
    valid = states["open"] + states["closed"]
    assert summary["cases"] == {"valid": valid, "invalid": 3, "planned": len(cases) - 5}


def test_events_look_like_a_citys_year(small: Simulation, deployment: Deployment) -> None:
    zone = deployment.settings.zone
    clock = Clock.for_deployment(deployment)
    types = Counter(e.type for e in small.events)
    assert types["accepted"] == len(small.plans)
    assert types["step"] > types["accepted"] // 2
    assert 0 < types["suspended"] == types["resumed"] < types["accepted"] // 5
    assert 0 < types["extended"] < types["suspended"]
    assert 0 < types["withdrawn"] < types["completed"] // 10
    reasons = {e.reason for e in small.events if e.type == "suspended"}
    assert reasons <= set(SUSPEND_REASONS)
    assert len(reasons) >= 5
    for e in small.events:
        local = e.at.astimezone(zone)
        assert clock.calendar.is_working_day(local.date()), e
        assert time(8, 30) <= local.time() < time(18, 0) or e.type != "accepted", e
        assert local.date() < HORIZON
    received = Counter(e.department for e in small.events if e.type == "accepted")
    busiest, quietest = received.most_common()[0][1], received.most_common()[-1][1]
    assert busiest > 5 * quietest  # some departments busy, some not
    t = small.figures.total
    assert t["early"] > t["on_time"] + t["late"] > 0
    assert t["late"] > 0


def test_groups_cover_the_supervised_departments_once(deployment: Deployment) -> None:
    groups = department_groups(deployment, 8)
    codes = [c for g in groups.values() for c in g]
    assert sorted(codes) == sorted(d.code for d in deployment.supervised_departments())
    assert all(1 <= len(g) <= 8 for g in groups.values())
    for name, members in groups.items():
        assert {deployment.department(c).category for c in members} == {name.rsplit("-", 1)[0]}
    assert len(department_groups(deployment, 50)) == 2  # one per category with supervision
    with pytest.raises(SimulationError, match="at least 1 department"):
        department_groups(deployment, 0)


def test_files_are_in_time_order_with_both_writer_styles(
    small: Simulation, written: tuple[Path, Any]
) -> None:
    out, summary = written
    days = [f.day for f in small.files]
    assert days == sorted(days)
    styles = {f["style"] for f in summary["folders"].values()}
    assert styles == {"rename", "append"}
    assert sum(f["style"] == "rename" for f in summary["folders"].values()) > len(styles)
    assert not list(out.rglob("*.tmp"))
    for drop in small.files:
        text = (out / drop.folder / drop.name).read_text("utf-8")
        assert text.endswith("\n")
        assert text.count("\n") == len(drop.lines)
        marks = {p.line for p in drop.placed}
        ats = [parse_json_line(t).at for n, t in enumerate(drop.lines, 1) if n not in marks]
        assert ats == sorted(ats)
        assert {a.date() for a in ats} <= {drop.day}
    assert sum(f["files"] for f in summary["folders"].values()) == summary["files"]


def test_rename_writers_show_only_the_temp_name_until_complete(tmp_path: Path) -> None:
    drop = DropFile("g-1", "events-20250102.jsonl", date(2025, 1, 2), "rename", ("{}",), 1, ())
    seen: list[tuple[bool, bool]] = []

    def look(temp: Path, final: Path) -> None:
        assert temp.name == temp_name(final.name) == ".events-20250102.jsonl.tmp"
        seen.append((temp.exists(), final.exists()))

    [done] = write_files([drop], tmp_path, before_rename=look)
    assert seen == [(True, False)]
    assert done.path.read_text() == "{}\n"
    assert done.size == 3
    assert [p.name for p in (tmp_path / "g-1").iterdir()] == ["events-20250102.jsonl"]


def test_append_writers_append_in_place(tmp_path: Path) -> None:
    lines = tuple(f'{{"n":{n}}}' for n in range(100))
    drop = DropFile("g-2", "events-20250102.jsonl", date(2025, 1, 2), "append", lines, 100, ())
    list(write_files([drop], tmp_path))
    list(write_files([drop], tmp_path))  # a second export appends to the same file
    text = (tmp_path / "g-2" / drop.name).read_text()
    assert text == "".join(line + "\n" for line in lines) * 2


def test_malformed_lines_are_rejected_with_a_clear_error(written: tuple[Path, Any]) -> None:
    out, summary = written
    kinds = Counter(m["kind"] for m in summary["malformed"])
    assert kinds == {"bad_json": 3, "missing_field": 3, "unknown_item": 3}
    for m in summary["malformed"]:
        path = out / m["folder"] / m["file"]
        text = path.read_text("utf-8").splitlines()[m["line"] - 1]
        if m["rejected_by"] == "ingest":
            assert parse_json_line(text).item in m["reason"]
            continue
        with pytest.raises(EventError) as caught:
            parse_json_line(text, source=m["file"], line=m["line"])
        message = str(caught.value)
        assert m["file"] in message
        assert f"line {m['line']}" in message
        if m["kind"] == "bad_json":
            assert m["reason"].startswith("malformed JSON")
        else:
            assert m["reason"].split(":")[0] in ("at", "case_id", "type")
            assert m["reason"].endswith("is required")


def test_without_faults_every_line_is_a_case_event(deployment: Deployment) -> None:
    sim = simulate(deployment, seed=3, shape=YearShape(40, 10, 45), faults=Faults.none())
    summary = sim.summary()
    assert summary["malformed"] == summary["contradictory"] == []
    assert summary["ingest"] == {"accepted": summary["lines"], "duplicate": 0, "rejected": 0}
    total = sim.figures.total
    assert (total["received"], total["carried_over"], total["completed"]) == (40, 10, 45)
    assert total["invalid"] == 0


# -- the figures, counted independently -----------------------------------------------------


def independent_count(
    deployment: Deployment, events: list[CaseEvent], now: datetime, dept: str | None
) -> Counter[str]:
    """The year's figures counted from the events (tests/figurecount.py)."""
    return independent_counts(deployment, events, *Y2025, now, dept)


def _counts(figures: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in figures.items() if isinstance(v, int)}


def test_the_stated_figures_equal_an_independent_count(
    deployment: Deployment, written: tuple[Path, Any]
) -> None:
    out, summary = written
    good = [
        r
        for _, _, r in read_back(out, summary)
        if isinstance(r, CaseEvent) and _known(deployment, r.item)
    ]
    now = datetime.fromisoformat(summary["now"])
    stated = summary["figures"]
    assert (stated["start"], stated["end"]) == ("2025-01-01", "2026-01-01")
    total = _counts(stated["all"])
    assert total == {**dict.fromkeys(total, 0), **independent_count(deployment, good, now, None)}
    assert (total["received"], total["carried_over"], total["completed"]) == (
        SMALL.received,
        SMALL.carried_over,
        SMALL.completed,
    )
    for code, figures in stated["departments"].items():
        counts = _counts(figures)
        assert counts == {
            **dict.fromkeys(counts, 0),
            **independent_count(deployment, good, now, code),
        }
    assert stated["all"]["completion_rate"]["numerator"] == SMALL.completed
    assert min(total[k] for k in ("withdrawn", "early", "on_time", "late", "warnings")) > 0


def test_the_server_computes_the_stated_figures(
    deployment: Deployment, written: tuple[Path, Any], tmp_path: Path
) -> None:
    """The strongest check: every file through the server's ingest and projector, in
    time order, then the server's figures."""
    from server.cases import CaseProjector
    from server.figures import figures, figures_by_department
    from server.ingest import Ingestor, raw_pieces
    from server.store.database import make_engine
    from server.store.migrate import upgrade_engine
    from server.store.tokens import Grant

    out, summary = written
    now = datetime.fromisoformat(summary["now"])
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'esup.db'}")
    try:
        upgrade_engine(engine)
        ingestor = Ingestor(engine, deployment, now=lambda: now)
        projector = CaseProjector(
            engine, Clock.for_deployment(deployment), deployment, now=lambda: now
        )
        answers: Counter[str] = Counter()
        rejected: list[tuple[str, int, str]] = []
        for folder, entry in summary["folders"].items():
            # A month of files per batch, as an agent that fell behind would send them.
            grant = Grant(folder, frozenset(entry["departments"]))
            by_month: dict[str, list[Path]] = {}
            for path in sorted((out / folder).glob("*.jsonl")):
                by_month.setdefault(path.name[:13], []).append(path)
            for paths in by_month.values():
                where = [(f"{folder}/{p.name}", n) for p in paths for n in range(1, _lines(p) + 1)]
                body = b"".join(p.read_bytes() for p in paths)
                parsed = parse_batch(body, NDJSON)
                assert len(parsed) == len(where)
                pieces = raw_pieces(body, NDJSON, len(where))
                report = ingestor.ingest(grant, parsed, lambda: pieces)  # noqa: B023
                projector.refresh(report.cases)
                for r in report.results:
                    answers[r.status] += 1
                    if r.status == "rejected":
                        rejected.append((*where[r.index], r.reason or ""))
        assert dict(answers) == summary["ingest"]
        assert sorted(rejected) == sorted(
            (f"{m['folder']}/{m['file']}", m["line"], m["reason"]) for m in summary["malformed"]
        )
        year = figures(engine, deployment, *Y2025)
        assert year.counts() == _counts(summary["figures"]["all"])
        split = figures_by_department(engine, deployment, *Y2025)
        for code, stated in summary["figures"]["departments"].items():
            assert split[code].counts() == _counts(stated), code
    finally:
        engine.dispose()


def test_the_command_writes_folders_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "year"
    argv = [
        "simulate",
        "--out",
        str(out),
        "--seed",
        "2",
        "--scale",
        "0.01",
        "--config",
        str(CONFIG),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "completion_rate" in printed
    assert "96.2%" in printed
    assert (out / SUMMARY_FILE).is_file()
    assert len([p for p in out.iterdir() if p.is_dir()]) == 6
    bad = ["simulate", "--out", str(tmp_path / "bad"), "--scale", "-1", "--config", str(CONFIG)]
    assert main(bad) == 2
    assert "scale must be a number" in capsys.readouterr().err
    assert main(argv) == 2  # the same directory again
    assert "is not an empty directory" in capsys.readouterr().err


def _known(deployment: Deployment, code: str) -> bool:
    try:
        deployment.item(code)
    except LookupError:
        return False
    return True


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def _parses(line: str) -> bool:
    try:
        parse_json_line(line)
    except EventError:
        return False
    return True


def test_the_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Two processes with different string-hash seeds write the same files."""
    for name, hash_seed in (("a", "1"), ("b", "2")):
        subprocess.run(
            [sys.executable, "-m", "esup.cli", "simulate", "--out", str(tmp_path / name),
             "--scale", "0.005", "--config", str(CONFIG)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )  # fmt: skip
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


SHAPES = [(0, 0, 0), (5, 0, 0), (1, 1, 2), (0, 3, 1), (37, 11, 40)]


@pytest.mark.parametrize("shape", [YearShape(*counts) for counts in SHAPES])
def test_any_shape_comes_out_exactly(deployment: Deployment, shape: YearShape) -> None:
    total = simulate(deployment, seed=5, shape=shape).figures.total
    assert (total["received"], total["carried_over"], total["completed"]) == (
        shape.received,
        shape.carried_over,
        shape.completed,
    )
    assert total["open_at_end"] == shape.open_at_end
