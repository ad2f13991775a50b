"""The scores' `esup-server` commands, and the scheduled feed, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, insert

from casework.configfiles import load_config
from server.cli import main
from server.scores.feed import read_csv
from server.scores.feedjob import FeedDeliveryError, FeedJob
from server.scores.period import Period
from server.scores.rules import Feed, ScoreRules
from server.scores.service import ScoreService
from server.store import tables

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2026, 2, 3, 4, tzinfo=UTC)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def settings_file(migrated: Engine, tmp_path: Path) -> Path:
    path = tmp_path / "server.yaml"
    url = migrated.url.render_as_string(hide_password=False)
    path.write_text(f"database: {url}\nconfig_dir: {CONFIG}\n", encoding="utf-8")
    with migrated.begin() as connection:
        connection.execute(
            insert(tables.cases),
            {"department": "fgw", "case_id": "K1", "item": "x", "state": "open",
             "level": "red", "anomalies": 0, "updated_at": NOW},
        )  # fmt: skip
        connection.execute(
            insert(tables.cards),
            {"department": "fgw", "case_id": "K1", "level": "red",
             "reached_at": datetime(2025, 4, 1, 3, tzinfo=UTC)},
        )  # fmt: skip
    return path


def test_import_appeal_close_and_export(
    settings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ("--config", str(settings_file))
    csv_file = tmp_path / "superior.csv"
    csv_file.write_text("department,period,score\nfgw,2025,90\nzzz,2025,80\n", encoding="utf-8")
    code, out, _ = run(capsys, "import", "superior", str(csv_file), "--quiet", *cfg)
    assert code == 2  # a row was rejected; the good one is stored
    assert "row 3, column 'department'" in out
    assert "2 rows read, 1 stored, 1 rejected" in out

    code, out, _ = run(capsys, "scores", "2025", "--format", "csv", *cfg)
    fgw = next(r for r in read_csv(out) if r["department"] == "fgw")
    assert str(fgw["final"]) == "-1.00"  # superior 90 × 10% = 9.00, a red card −10

    code, out, err = run(capsys, "period", "close", "2025", "--by", "考评办", *cfg)
    assert (code, err) == (0, "")
    code, out, err = run(
        capsys, "appeal", "file", "--department", "fgw", "--case", "K1", "--level", "red",
        "--by", "发改委", "--reason", "系统故障", *cfg,
    )  # fmt: skip
    assert code == 0, err
    appeal_id = out.split()[1].rstrip(":")
    code, out, err = run(
        capsys, "appeal", "decide", appeal_id, "--uphold", "--by", "监察科",
        "--reason", "属实", *cfg,
    )  # fmt: skip
    assert code == 0, err
    assert "upheld" in out
    assert "Closed period 2025 restated." in out
    code, out, _ = run(capsys, "appeal", "list", *cfg)
    assert "appeal_filed" in out
    assert "appeal_upheld" in out

    code, out, _ = run(capsys, "scores", "2025", *cfg)
    body = json.loads(out)
    [restatement] = body["restatements"]
    assert restatement["changes"]["fgw"]["before"]["final"] == -1.0
    assert restatement["changes"]["fgw"]["after"]["final"] == 9.0

    xlsx = tmp_path / "out.xlsx"
    assert run(capsys, "scores", "2025", "--format", "xlsx", "--output", str(xlsx), *cfg)[0] == 0
    assert load_workbook(xlsx).sheetnames[0] == "政府部门 2025"

    code, out, _ = run(capsys, "operator", "create", "--name", "o", "--role", "office", *cfg)
    assert code == 0
    assert "cannot be shown again" in out
    code, _, err = run(capsys, "period", "close", "2025-13", "--by", "x", *cfg)
    assert code == 2
    assert "2025-13" in err


def test_the_feed_job_writes_files_and_posts_with_retries(migrated: Engine, tmp_path: Path) -> None:
    service = ScoreService(migrated, load_config(CONFIG), ScoreRules(), now=lambda: NOW)
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503 if len(calls) < 3 else 200)

    sleeps: list[float] = []
    feed = Feed(folder=tmp_path / "feed", url="http://office.example/feed", retries=3)
    job = FeedJob(
        service, feed, transport=httpx.MockTransport(handler), sleep=sleeps.append, now=lambda: NOW
    )
    assert job.periods_due() == (Period(2026, 1), Period(2026))
    done = job.deliver(Period(2025))
    assert sorted(p.name for p in (tmp_path / "feed").iterdir()) == [
        "scores-2025.csv",
        "scores-2025.json",
        "scores-2025.xlsx",
    ]
    assert done[-1].endswith(": 200")
    assert len(calls) == 3
    assert sleeps == [feed.retry_seconds] * 2
    body: dict[str, Any] = json.loads(calls[-1].content)
    assert body["period"] == "2025"
    assert len(body["departments"]) == 94

    refused = FeedJob(
        service,
        feed.model_copy(update={"folder": None}),
        transport=httpx.MockTransport(lambda r: httpx.Response(400)),
        sleep=sleeps.append,
    )
    with pytest.raises(FeedDeliveryError, match="not retried"):
        refused.deliver(Period(2025))
    refused.run()  # the scheduled run logs and counts, never raises
    assert refused.failures == 1


def test_the_scheduler_checks_closed_periods_and_runs_the_feed_when_configured(
    migrated: Engine, tmp_path: Path
) -> None:
    from zoneinfo import ZoneInfo

    from server.scores.feedjob import start_feed_scheduler

    service = ScoreService(migrated, load_config(CONFIG), ScoreRules(), now=lambda: NOW)
    for feed, ids in (
        (Feed(), {"esup-scores-restate"}),
        (Feed(folder=tmp_path), {"esup-scores-restate", "esup-scores-feed"}),
    ):
        scheduler = start_feed_scheduler(FeedJob(service, feed), ZoneInfo("Asia/Shanghai"))
        try:
            assert {job.id for job in scheduler.get_jobs()} == ids
        finally:
            scheduler.shutdown(wait=True)
