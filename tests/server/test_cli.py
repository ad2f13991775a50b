"""`esup-server db upgrade` and `esup-server token create|list|revoke`, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main
from server.store.database import make_engine
from server.store.tokens import Grant, TokenStore

CONFIG = Path(__file__).resolve().parents[2] / "config"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verify(url: str, token: str) -> Grant | None:
    engine = make_engine(url)
    try:
        return TokenStore(engine).verify(token)
    finally:
        engine.dispose()


def test_tokens_from_the_command_line(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--database", database_url)
    code, out, err = run(capsys, "db", "upgrade", *db)
    assert (code, err) == (0, "")
    assert "up to date" in out
    assert run(capsys, "db", "upgrade", *db)[0] == 0

    code, out, err = run(capsys, "token", "list", *db)
    assert (code, out.strip(), err) == (0, "No agent has a token yet.", "")

    create = ("token", "create", "--agent", "fgw-agent", "--config", str(CONFIG))
    code, out, err = run(capsys, *create, "--departments", "fgw,jyj", *db)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    token = lines[1]
    assert "cannot be shown again" in lines[2]
    assert verify(database_url, token) == Grant("fgw-agent", frozenset({"fgw", "jyj"}))

    code, out, err = run(capsys, *create, "--departments", "fgw", *db)
    assert code == 1
    assert "'fgw-agent' already has a token" in err

    code, out, err = run(capsys, "token", "list", *db)
    assert code == 0
    [header, row] = out.splitlines()
    assert header.split()[:2] == ["AGENT", "STATE"]
    assert row.split()[0:2] == ["fgw-agent", "live"]
    assert row.split()[-1] == "fgw,jyj"
    assert token not in out

    code, out, err = run(capsys, "token", "revoke", "--agent", "fgw-agent", *db)
    assert (code, err) == (0, "")
    assert verify(database_url, token) is None
    assert "revoked" in run(capsys, "token", "list", *db)[1]

    code, out, err = run(capsys, "token", "revoke", "--agent", "fgw-agent", *db)
    assert code == 1
    assert "'fgw-agent' was already revoked" in err
    code, out, err = run(capsys, "token", "revoke", "--agent", "nobody", *db)
    assert code == 1
    assert "'nobody'" in err


def test_an_unknown_department_is_named(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--database", database_url)
    assert run(capsys, "db", "upgrade", *db)[0] == 0
    code, out, err = run(
        capsys,
        *("token", "create", "--agent", "a", "--departments", "fgw,fgx"),
        *("--config", str(CONFIG), *db),
    )
    assert code == 2
    assert out == ""
    assert "Unknown department code 'fgx'" in err
    assert "departments.yaml" in err
    assert run(capsys, "token", "list", *db)[1].strip() == "No agent has a token yet."


def test_token_commands_ask_for_an_upgrade_first(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "token", "list", "--database", database_url)
    assert code == 1
    assert "has no esup tables" in err
    assert "esup-server db upgrade --database" in err


def test_a_bad_configuration_directory_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(
        capsys,
        *("token", "create", "--agent", "a", "--departments", "fgw"),
        *("--config", str(tmp_path / "missing"), "--database", f"sqlite:///{tmp_path}/e.db"),
    )
    assert code == 2
    assert "there is no configuration directory here" in err


def test_an_unreachable_database_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/esup?connect_timeout=2"
    code, _out, err = run(capsys, "db", "upgrade", "--database", url)
    assert code == 1
    assert err.startswith("Cannot reach the database at postgresql+psycopg://postgres@127.0.0.1:1")
    code, _out, err = run(capsys, "db", "upgrade", "--database", "nosuchdb://x")
    assert code == 2
    assert "Cannot use the database URL" in err
