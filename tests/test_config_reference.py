"""The configuration references name every key the configuration models accept, and the
shipped examples load with their loaders.

Each file's keys are found by walking its pydantic model (`model_fields`, recursing into
nested models, lists and mappings of models, and unions such as the agent's source kinds),
never from a list written here. So when someone adds a field to one of these models, the
walk yields the new key, the doc does not name it yet, and
`test_every_key_is_documented` fails naming the file and the key: a new key cannot ship
undocumented. The server.yaml table is held to more: each key by its full dotted path, with
the model's default in its default column.

A key counts as documented in a doc section when a code span there is the key's dotted
path, its last name, a span ending in ``.name`` (``.yellow`` after ``esupervision.warning``),
``name: value``, or, for a section, one of its keys (``server.url`` documents ``server``).
docs/agent.md is one section: its tables name nested keys by their last name
(``max_attempts`` on the ``notify.timeout_seconds`` row, a source's ``path``).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Mapping
from datetime import time
from pathlib import Path
from typing import Any, Union

import pytest
import yaml
from pydantic import BaseModel

from agent.config import AgentConfig, load_agent_config
from casework.config import CalendarConfig, Settings
from casework.configfiles import _CatalogFile, _DepartmentsFile, load_config
from server.scores.rules import ScoreRules, load_rules
from server.settings import ServerSettings, load_settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
DOCS = ROOT / "docs"

# file -> (its model, the doc, the heading of its section there or None for the whole doc)
REFERENCES: dict[str, tuple[type[BaseModel], str, str | None]] = {
    "esup.yaml": (Settings, "configuration.md", "## esup.yaml"),
    "departments.yaml": (_DepartmentsFile, "configuration.md", "## departments.yaml"),
    "catalog.yaml": (_CatalogFile, "configuration.md", "## catalog.yaml"),
    "calendar.yaml": (CalendarConfig, "configuration.md", "## calendar.yaml"),
    "server.yaml": (ServerSettings, "configuration.md", "## server.yaml"),
    "scores.yaml": (ScoreRules, "scores.md", "### config/scores.yaml"),
    "agent.yaml": (AgentConfig, "agent.md", None),
}


def models_in(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models an annotation holds, each with the path segment before its keys:
    ``""`` directly or in a list, ``"*"`` as a mapping's values (``weights.*.superior``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from models_in(args[0])
    elif origin in (dict, Mapping) or (
        isinstance(origin, type) and issubclass(origin, Mapping) and args
    ):
        yield from (("*" if not seg else f"*.{seg}", m) for seg, m in models_in(args[-1]))
    elif origin in (Union, types.UnionType, tuple, list, set, frozenset) or args:
        for arg in args:
            if arg is not Ellipsis:
                yield from models_in(arg)


def keys_of(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key `model` accepts as a dotted path, parents before their children."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        yield path
        for segment, inner in models_in(field.annotation):
            yield from keys_of(inner, f"{path}.{segment}." if segment else f"{path}.")


def section(doc: str, heading: str | None) -> str:
    text = (DOCS / doc).read_text(encoding="utf-8")
    if heading is None:
        return text
    lines = text.splitlines()
    assert heading in lines, f"docs/{doc} has no section {heading!r}"
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def code_spans(text: str) -> set[str]:
    return {span.strip() for span in re.findall(r"`([^`\n]+)`", text)}


def documented(path: str, spans: set[str]) -> bool:
    name = path.rsplit(".", 1)[-1]
    return any(
        span in (path, name)
        or span.endswith("." + name)
        or span.startswith(name + ":")
        or f".{name}." in f".{span}"
        for span in spans
    )


@pytest.mark.parametrize("file", sorted(REFERENCES))
def test_every_key_is_documented(file: str) -> None:
    model, doc, heading = REFERENCES[file]
    spans = code_spans(section(doc, heading))
    keys = list(keys_of(model))

    missing = [k for k in keys if not documented(k, spans)]

    assert keys, f"no keys found in {model.__name__}"
    assert missing == [], (
        f"docs/{doc} ({heading or 'whole file'}) does not document {file}: {missing}"
    )


def test_the_walk_finds_nested_sections_source_kinds_and_mapped_models() -> None:
    agent = set(keys_of(AgentConfig))
    scores = set(keys_of(ScoreRules))
    server = set(keys_of(ServerSettings))

    assert {"server.token_file", "notify.max_attempts", "http.port"} <= agent
    assert {"sources.path", "sources.csv.delimiter", "sources.query", "sources.kind"} <= agent
    assert {"weights.*.superior", "staff_ladder.steps.label", "esupervision.cap.year"} <= scores
    assert {"listen.port", "working_hours.start", "alerts.webhook_digest"} <= server


def test_a_field_without_documentation_is_found() -> None:
    class Extra(ServerSettings):
        replicas_hint: int = 1

    spans = code_spans(section("configuration.md", "## server.yaml"))

    assert [k for k in keys_of(Extra) if not documented(k, spans)] == ["replicas_hint"]


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


def _server_rows() -> dict[str, list[str]]:
    rows = {}
    for line in section("configuration.md", "## server.yaml").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_server_table_names_every_key_by_its_path_with_its_default() -> None:
    rows = _server_rows()
    defaults = ServerSettings()

    for key in keys_of(ServerSettings):
        assert key in rows, f"docs/configuration.md's server.yaml table has no row `{key}`"
        value: Any = defaults
        for name in key.split("."):
            value = getattr(value, name)
        if isinstance(value, BaseModel):
            continue
        assert f"`{_default_text(value)}`" in rows[key][2], (key, rows[key][2])


def test_the_shipped_configuration_loads() -> None:
    deployment = load_config(CONFIG)

    assert deployment.departments
    assert load_settings(CONFIG / "server.yaml").listen.port == 8470
    assert load_rules(CONFIG / "scores.yaml") == ScoreRules.model_validate(
        yaml.safe_load((CONFIG / "scores.yaml").read_text(encoding="utf-8")) or {}
    )


def test_the_agent_example_loads(tmp_path: Path) -> None:
    # The example's token file is a production path; point it at one made here.
    data = yaml.safe_load((CONFIG / "agent.yaml").read_text(encoding="utf-8"))
    (tmp_path / "agent.token").write_text("secret\n", encoding="utf-8")
    data["server"]["token_file"] = "agent.token"
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")

    config = load_agent_config(tmp_path / "agent.yaml")

    assert config.token() == "secret"
    assert config.sources
