"""An edited config/ reaches a running server: watched or on SIGHUP, all or nothing.

The configuration is test_reconfigure's small one (DESIGN.md's worked example:
promised 7 working days, then 5).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from serverprocess import running_server, upgrade
from sqlalchemy import Engine
from test_reconfigure import NOW, projector, rows, seed, write_config

from casework.configfiles import load_config
from server.liveconfig import ConfigReloader, Configuration, ConfigWatcher, LiveConfig
from server.reconfigure import put_in_service, recompute_on_start
from server.store.database import make_engine
from server.store.tokens import TokenStore


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def test_a_directory_that_does_not_load_leaves_the_configuration_in_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_config(tmp_path / "config")
    live = LiveConfig(Configuration.of(load_config(directory)))
    heard: list[str] = []
    live.listen(lambda old, new: heard.append(new.fingerprint))
    reload = ConfigReloader(directory, live)
    before = live()

    (directory / "catalog.yaml").write_text(
        (directory / "catalog.yaml").read_text().replace("promised_days: 7", "promised_days: -1")
    )
    with caplog.at_level(logging.ERROR, logger="server.liveconfig"):
        assert reload() is False
    assert live() is before
    assert heard == []
    problems = "\n".join(r.getMessage() for r in caplog.records)
    assert "not reloaded" in problems
    assert "catalog.yaml" in problems
    assert "promised_days" in problems
    assert "-1" in problems

    write_config(directory, promised=5)
    assert reload() is True
    assert live() is not before
    assert heard == [live().fingerprint] != [before.fingerprint]


def test_the_watcher_reloads_once_after_edits_settle(tmp_path: Path) -> None:
    directory = write_config(tmp_path / "config")
    calls: list[float] = []
    watcher = ConfigWatcher(directory, lambda: calls.append(time.monotonic()), quiet=0.3).start()
    try:
        for promised in (6, 5, 4):  # an editor saving three times in quick succession
            write_config(directory, promised=promised)
        (directory / "notes.txt").write_text("not configuration")
        wait_for(lambda: len(calls) == 1, "a reload after the edits")
        time.sleep(1.0)  # and no second one for the same edits
        assert len(calls) == 1
        (directory / "calendar.yaml").write_text("holidays: []\n")
        wait_for(lambda: len(calls) == 2, "a reload after another edit")
    finally:
        watcher.stop()


def test_a_reloaded_limit_recomputes_the_open_cases(migrated: Engine, tmp_path: Path) -> None:
    directory = write_config(tmp_path / "config")
    live = LiveConfig(Configuration.of(load_config(directory)))
    cases = projector(live().deployment, migrated)
    seed(migrated, cases)
    recompute_on_start(cases, live().fingerprint)
    old = rows(migrated)
    assert {old[f"O{n}"]["level"] for n in range(3)} == {"warning"}
    live.listen(lambda before, after: put_in_service(cases, before, after))

    write_config(directory, promised=5)
    assert ConfigReloader(directory, live)()
    new = rows(migrated)
    assert {new[f"O{n}"]["level"] for n in range(3)} == {"yellow"}
    assert new["C"] == old["C"]  # closed cases keep their results
    assert cases.clock is live().clock


def case_of(server_url: str) -> dict[str, object]:
    """The case's stored state; empty until the projection has derived it."""
    answer = httpx.get(f"{server_url}/api/v1/cases/zrzy/O1", timeout=5)
    assert answer.status_code == 200, answer.text
    state: dict[str, object] | None = answer.json()["state"]
    return state or {}


@pytest.mark.parametrize("how", ["watched", "sighup"])
def test_a_running_server_takes_an_edited_catalog(
    database_url: str, tmp_path: Path, how: str
) -> None:
    directory = write_config(tmp_path / "config")
    upgrade(database_url, tmp_path)
    engine = make_engine(database_url)
    try:
        token = TokenStore(engine).create("agent-1", ["zrzy"])
    finally:
        engine.dispose()
    event = {
        "event_id": "O1-1",
        "case_id": "O1",
        "department": "zrzy",
        "item": "zrzy-001",
        "type": "accepted",
        "at": NOW.replace(day=15, hour=10).isoformat(),
    }
    settings = {"watch_config": how == "watched", "config_quiet_seconds": 0.3}
    with running_server(tmp_path, database_url, "live", config_dir=directory, **settings) as server:
        answer = httpx.post(
            f"{server.base_url}/api/v1/events",
            content=json.dumps(event),
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.json()["accepted"] == 1, answer.text
        wait_for(lambda: case_of(server.base_url).get("promised_due") is not None, "projection")
        before = case_of(server.base_url)["promised_due"]
        assert before == "2018-10-24"  # 7 working days from 2018-10-15

        write_config(directory, promised=5)
        if how == "sighup":
            time.sleep(1.0)  # the watcher is off: nothing may happen without the signal
            assert case_of(server.base_url)["promised_due"] == before
            server.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: case_of(server.base_url)["promised_due"] == "2018-10-22",
            f"the new limit in service ({how})",
        )
        catalog = httpx.get(f"{server.base_url}/api/v1/catalog", timeout=5).json()
        item = next(i for i in catalog["items"] if i["code"] == "zrzy-001")
        assert item["promised_days"] == 5
        assert "configuration reloaded" in server.output()


def test_reloads_are_serialised(tmp_path: Path) -> None:
    """Two reloads at once (a signal during a watched change) run one after the other."""
    directory = write_config(tmp_path / "config")
    live = LiveConfig(Configuration.of(load_config(directory)))
    inside = threading.Event()
    overlap: list[bool] = []

    def slow(_old: Configuration, _new: Configuration) -> None:
        overlap.append(inside.is_set())
        inside.set()
        time.sleep(0.2)
        inside.clear()

    live.listen(slow)
    reload = ConfigReloader(directory, live)
    threads = [threading.Thread(target=reload) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlap == [False, False, False]
