"""`esup explain`: the supervisor's "why is this case red?"."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from esup.cli import main

CASE = "2018-XK-0001"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    (d / "esup.yaml").write_text("city: 测试市\ntimezone: Asia/Shanghai\n", encoding="utf-8")
    (d / "departments.yaml").write_text(
        "departments:\n"
        "  - {code: zrzy, name: 市自然资源和规划局, category: government, supervised: true}\n",
        encoding="utf-8",
    )
    (d / "catalog.yaml").write_text(
        "items:\n"
        "  - {code: zrzy-001, name: 建设工程规划许可证核发, department: zrzy, kind: approval,\n"
        "     promised_days: 7, legal_days: 10}\n",
        encoding="utf-8",
    )
    (d / "calendar.yaml").write_text("years: {}\n", encoding="utf-8")
    return d


def line(event_id: str, kind: str, at: str, **fields: object) -> str:
    event = {
        "event_id": event_id,
        "case_id": CASE,
        "department": "zrzy",
        "item": "zrzy-001",
        "type": kind,
        "at": at,
        **fields,
    }
    return json.dumps(event, ensure_ascii=False)


ACCEPTED = line("a1", "accepted", "2018-10-15T10:00:00+08:00")


def explain(
    tmp_path: Path, config_dir: Path, lines: list[str], *extra: str
) -> tuple[int, str, str]:
    events = tmp_path / "case.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    from contextlib import redirect_stderr, redirect_stdout

    with redirect_stdout(out), redirect_stderr(err):
        code = main(["explain", str(events), "--config", str(config_dir), *extra])
    return code, out.getvalue(), err.getvalue()


def test_json_document_of_the_published_example(tmp_path: Path, config_dir: Path) -> None:
    code, out, _ = explain(
        tmp_path, config_dir, [ACCEPTED], "--at", "2018-10-30T09:00:00+08:00", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["format"] == "esup.explain/1"
    assert doc["case"] == {
        "department": "zrzy",
        "case_id": CASE,
        "item": "zrzy-001",
        "item_name": "建设工程规划许可证核发",
    }
    assert (doc["promised_due_date"], doc["legal_due_date"]) == ("2018-10-24", "2018-10-29")
    assert doc["promised_deadline"] == "2018-10-25T00:00:00+08:00"
    assert doc["legal_deadline"] == "2018-10-30T00:00:00+08:00"
    assert doc["level"] == "red"
    assert [(c["level"], c["at"]) for c in doc["cards"]] == [
        ("warning", "2018-10-22T00:00:00+08:00"),
        ("yellow", "2018-10-25T00:00:00+08:00"),
        ("red", "2018-10-30T00:00:00+08:00"),
    ]
    assert doc["limits"]["source"] == "catalog"
    assert doc["days"][:3] == [
        {"from": "2018-10-16", "to": "2018-10-19", "kind": "counted", "first": 1, "last": 4},
        {"from": "2018-10-20", "to": "2018-10-21", "kind": "weekend"},
        {"from": "2018-10-22", "to": "2018-10-26", "kind": "counted", "first": 5, "last": 9},
    ]


def test_excluded_days_carry_the_procedure_reason(tmp_path: Path, config_dir: Path) -> None:
    lines = [
        ACCEPTED,
        line("a2", "suspended", "2018-10-17T10:00:00+08:00", reason="expert_review", days=3),
        line("a3", "resumed", "2018-10-23T10:00:00+08:00"),
    ]
    code, out, _ = explain(
        tmp_path, config_dir, lines, "--at", "2018-10-24T09:00:00+08:00", "--json"
    )
    doc = json.loads(out)
    assert code == 0
    assert {
        "from": "2018-10-18",
        "to": "2018-10-19",
        "kind": "excluded",
        "reason": "expert_review",
    } in doc["days"]
    assert {
        "from": "2018-10-22",
        "to": "2018-10-22",
        "kind": "excluded",
        "reason": "expert_review",
    } in doc["days"]
    counted = [r for r in doc["days"] if r["kind"] == "counted"]
    assert counted[-1]["last"] >= 7
    assert doc["promised_due_date"] == "2018-10-29"
    assert doc["suspensions"][0]["excluded_days"] == 3


def test_text_output_answers_why_red(tmp_path: Path, config_dir: Path) -> None:
    code, out, _ = explain(tmp_path, config_dir, [ACCEPTED], "--at", "2018-10-30T09:00:00+08:00")
    assert code == 0
    assert "RED" in out
    assert "red from 2018-10-30T00:00:00+08:00" in out
    assert "Card        yellow reached 2018-10-25T00:00:00+08:00" in out
    assert "weekend" in out


def test_stdin_and_make_up_day_note(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "sys.stdin", io.StringIO(line("b1", "accepted", "2008-09-26T16:00:00+08:00") + "\n")
    )
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    code = main(
        ["explain", "--config", str(config_dir), "--at", "2008-09-27T12:00:00+08:00", "--json"]
    )
    assert code == 0
    doc = json.loads(out.getvalue())
    assert doc["days"][0] == {
        "from": "2008-09-27",
        "to": "2008-09-28",
        "kind": "counted",
        "note": "make-up working day",
        "first": 1,
        "last": 2,
    }


def test_bad_line_names_line_field_and_value(tmp_path: Path, config_dir: Path) -> None:
    bad = line("a2", "suspended", "2018-10-17T10:00:00+08:00", reason="lunch", days=3)
    code, out, err = explain(
        tmp_path, config_dir, [ACCEPTED, bad], "--at", "2018-10-20T00:00:00+08:00"
    )
    assert code == 2
    assert out == ""
    assert "line 2" in err
    assert "'reason'" in err
    assert "'lunch'" in err


def test_unknown_item_and_mixed_cases_are_refused(tmp_path: Path, config_dir: Path) -> None:
    code, _, err = explain(
        tmp_path,
        config_dir,
        [ACCEPTED.replace("zrzy-001", "zrzy-999")],
        "--at",
        "2018-10-20T00:00:00+08:00",
    )
    assert code == 2
    assert "zrzy-999" in err
    other = line("b1", "step", "2018-10-16T10:00:00+08:00", step="审查").replace(CASE, "OTHER")
    code, _, err = explain(
        tmp_path, config_dir, [ACCEPTED, other], "--at", "2018-10-20T00:00:00+08:00"
    )
    assert code == 2
    assert "one case at a time" in err


def test_bad_at_and_default_now(tmp_path: Path, config_dir: Path) -> None:
    code, _, err = explain(tmp_path, config_dir, [ACCEPTED], "--at", "2018-10-20 09:00")
    assert code == 2
    assert "no UTC offset" in err
    code, out, _ = explain(tmp_path, config_dir, [ACCEPTED], "--json")
    assert code == 0
    assert json.loads(out)["state"] == "open"


def test_uncovered_year_is_said(tmp_path: Path, config_dir: Path) -> None:
    code, out, _ = explain(
        tmp_path,
        config_dir,
        [line("c1", "accepted", "2026-12-28T10:00:00+08:00")],
        "--at",
        "2026-12-29T10:00:00+08:00",
    )
    assert code == 0
    assert "Calendar does not cover 2027" in out


def test_broken_config_exits_2(tmp_path: Path, config_dir: Path) -> None:
    (config_dir / "esup.yaml").write_text("city: x\ntimezone: Mars/Olympus\n", encoding="utf-8")
    code, _, err = explain(tmp_path, config_dir, [ACCEPTED], "--at", "2018-10-20T00:00:00+08:00")
    assert code == 2
    assert "Mars/Olympus" in err


def test_every_key_of_the_document_is_documented(tmp_path: Path, config_dir: Path) -> None:
    lines = [
        ACCEPTED,
        line("a2", "suspended", "2018-10-17T10:00:00+08:00", reason="testing", days=2),
        line("a3", "extended", "2018-10-18T10:00:00+08:00", days=2),
        line("a4", "completed", "2018-10-30T10:00:00+08:00", result="approved"),
    ]
    code, out, _ = explain(
        tmp_path, config_dir, lines, "--at", "2018-11-01T00:00:00+08:00", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    text = (Path(__file__).parents[2] / "docs" / "explain.md").read_text(encoding="utf-8")
    keys = set(doc) | set(doc["limits"]) | set(doc["suspensions"][0]) | set(doc["days"][0])
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert missing == []
