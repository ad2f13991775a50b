"""`esup config check`: OK and a summary, or every problem and exit status 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esup.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config"


def test_shipped_config_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "OK"
    summary = " ".join(out.split())
    for fact in (
        "94 departments",
        "48 government",
        "26 party and mass organisations",
        "20 stationed units",
        "43 under supervision",
        "170 approval items with 181 sub-items",
        "5 petition categories",
        "2 instruction kinds",
        "no calendar years configured",
        "holidays known through 2026; dates from 2027 count as Monday-Friday",
    ):
        assert fact in summary
    assert err == ""


def test_a_configured_year_extends_the_calendar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "config"
    shutil.copytree(SHIPPED, copy)
    (copy / "calendar.yaml").write_text(
        "years:\n  2027:\n    source: 国务院办公厅通知\n    holidays: [2027-01-01]\n",
        encoding="utf-8",
    )
    assert main(["config", "check", str(copy)]) == 0
    assert "holidays known through 2027; dates from 2028" in capsys.readouterr().out


def test_directory_defaults_to_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.startswith("OK\n")


def test_broken_copy_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "config"
    shutil.copytree(SHIPPED, broken)
    edit(broken / "esup.yaml", "timezone: Asia/Shanghai", "timezone: Asia/Beijing")
    edit(broken / "departments.yaml", "category: stationed", "category: central")
    edit(broken / "catalog.yaml", "department: fgw\n", "department: fgv\n")
    edit(broken / "calendar.yaml", "workdays: []", "workdays: [2026-13-01]")

    assert main(["config", "check", str(broken)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[-1] == f"4 problem(s) in {broken}; nothing was loaded."
    expected = [
        (broken / "esup.yaml", "timezone", "'Asia/Beijing'"),
        (broken / "departments.yaml", "departments[74].category", "'central'"),
        (broken / "catalog.yaml", "items[0].department", "'fgv'"),
        (broken / "calendar.yaml", "workdays[0]", "'2026-13-01'"),
    ]
    assert len(lines) == len(expected) + 1
    for line, (path, key, value) in zip(lines, expected, strict=False):
        assert line.startswith(f"{path}: {key}: ")
        assert value in line


def test_missing_directory_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_scores_rules_are_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "config"
    shutil.copytree(SHIPPED, copy)
    (copy / "scores.yaml").write_text("thresholds: {satisfied: -5}\n", encoding="utf-8")
    assert main(["config", "check", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'scores.yaml'}: thresholds.satisfied: must be at least 0 (got -5)." in err
