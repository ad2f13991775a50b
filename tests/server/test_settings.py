"""The server's settings file, and `esup-server run` as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from serverprocess import free_port, server_command
from sqlalchemy import select

from casework.errors import ConfigErrors
from server.cli import main
from server.settings import DEFAULT_MAX_BODY_BYTES, Listen, ServerSettings, load_settings
from server.store.database import make_engine
from server.store.migrate import current_revision, upgrade_engine
from server.store.tables import cases
from server.store.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_for_an_empty_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "server.yaml", ""))
    assert settings.database == "sqlite:///var/esup.db"
    assert settings.config_dir == tmp_path / "config"
    assert settings.listen == Listen(host="127.0.0.1", port=8470)
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 8 * 1024 * 1024
    assert settings.clock_skew_seconds == 300


def test_the_shipped_example_is_valid_and_names_the_shipped_config() -> None:
    settings = load_settings(CONFIG / "server.yaml")
    assert settings.config_dir.resolve() == CONFIG
    assert settings == ServerSettings(config_dir=settings.config_dir)  # it shows the defaults


def test_values_and_absolute_paths(tmp_path: Path) -> None:
    text = (
        "database: postgresql+psycopg://esup@db:5432/esup\n"
        f"config_dir: {tmp_path / 'elsewhere'}\n"
        "listen: {host: 0.0.0.0, port: 9000}\n"
        "max_body_bytes: 1024\n"
        "clock_skew_seconds: 0\n"
    )
    settings = load_settings(write(tmp_path / "s.yaml", text))
    assert settings.config_dir == tmp_path / "elsewhere"
    assert settings.listen.port == 9000
    assert (settings.max_body_bytes, settings.clock_skew_seconds) == (1024, 0)


def test_errors_name_file_key_and_value(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        "listen: {port: 70000}\nmax_body_bytes: '8M'\nclock_skew_seconds: -1\ncolour: red\n",
    )
    with pytest.raises(ConfigErrors) as excinfo:
        load_settings(path)
    messages = [str(e) for e in excinfo.value.errors]
    assert len(messages) == 4
    assert all(m.startswith(f"{path}: ") for m in messages)
    text = "\n".join(messages)
    assert "listen.port" in text
    assert "70000" in text
    assert "max_body_bytes" in text
    assert "'8M'" in text
    assert "clock_skew_seconds" in text
    assert "colour" in text
    assert "'database'" in text  # the valid keys are listed for an unknown one


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="settings file is missing"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigErrors, match="not valid YAML"):
        load_settings(write(tmp_path / "bad.yaml", "listen: [\n"))
    with pytest.raises(ConfigErrors, match="mapping"):
        load_settings(write(tmp_path / "list.yaml", "- 1\n"))


def test_run_refuses_an_invalid_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "s.yaml", "listen: {port: 0}\n")
    assert main(["run", "--config", str(path)]) == 2
    assert "listen.port" in capsys.readouterr().err


def test_run_serves_ingest_and_stops_on_sigterm(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'esup.db'}"
    engine = make_engine(database)
    try:
        upgrade_engine(engine)
        token = TokenStore(engine).create("agent-1", ["fgw"])
    finally:
        engine.dispose()
    port = free_port()
    settings = write(
        tmp_path / "server.yaml",
        f"database: {database}\nconfig_dir: {CONFIG}\nlisten: {{host: 127.0.0.1, port: {port}}}\n",
    )
    log = (tmp_path / "server.log").open("w+", encoding="utf-8")
    process = subprocess.Popen(
        [*server_command(), "run", "--config", str(settings)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its log must be complete when it dies
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the server exited early"
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready in 30 s"
            time.sleep(0.1)
        event = {
            "event_id": "e-1",
            "case_id": "C-1",
            "department": "fgw",
            "item": "fgw-001",
            "type": "accepted",
            "at": "2024-03-01T09:30:00+08:00",
            "seq": 1,
        }
        response = httpx.post(
            f"{base}/api/v1/events",
            content=json.dumps(event) + "\n",
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["accepted"] == 1
        # The case is projected after the answer: wait until nothing is queued.
        while httpx.get(f"{base}/api/v1/projection", timeout=5).json()["pending"]:
            assert time.monotonic() < deadline + 30, "the projection did not catch up in 30 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            raise
        log.seek(0)
        output = log.read()
        log.close()
    # uvicorn shuts down cleanly, then ends by the signal it caught.
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "path=/api/v1/events status=200" in output
    assert "ingest: agent=agent-1 events=1 accepted=1" in output
    # The server derived the case's state from the event it accepted.
    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(cases.c.state, cases.c.item).where(cases.c.case_id == "C-1")
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("open", "fgw-001")


@pytest.mark.postgres
def test_run_refuses_an_unmigrated_postgresql(
    postgres_database: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _name = postgres_database
    engine = make_engine(url)
    try:
        assert current_revision(engine) is None  # else `run` would start serving
    finally:
        engine.dispose()
    path = write(tmp_path / "s.yaml", f"database: {url}\nconfig_dir: {CONFIG}\n")
    assert main(["run", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "has no esup tables" in err
    assert "esup-server db upgrade" in err
