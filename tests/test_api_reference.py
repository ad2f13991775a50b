"""docs/api.md is exactly what scripts/make_api_reference.py renders from the app's OpenAPI
document, names every route, and says which routes need which bearer token."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Header
from fastapi.routing import APIRoute
from scriptload import load_script

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"


@cache
def script() -> ModuleType:
    return load_script("scripts/make_api_reference.py", "make_api_reference")


@cache
def app() -> FastAPI:
    built: FastAPI = script().build_app()
    return built


def api_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(path, route) of every API route, also inside included routers (FastAPI keeps those
    as wrappers with `original_router` and an `include_context` holding the prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from api_routes(inner.routes, prefix + getattr(context, "prefix", ""))


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_committed_reference_is_the_script_output() -> None:
    rendered = script().render(app().openapi())
    committed = API_MD.read_text(encoding="utf-8")

    assert committed == rendered, (
        "docs/api.md differs from the API; regenerate it with "
        "`.venv/bin/python scripts/make_api_reference.py` and commit the result"
    )


def test_rendering_twice_gives_the_same_text() -> None:
    first = script().render(script().build_app().openapi())

    assert first == script().render(script().build_app().openapi())


def test_every_route_of_the_app_has_its_section() -> None:
    text = API_MD.read_text(encoding="utf-8")
    routes = [(p, r) for p, r in api_routes(app().routes) if r.include_in_schema]

    assert len(routes) >= 18
    for path, route in routes:
        for method in sorted(route.methods or ()):
            assert f"\n## {method} {path}\n" in text, f"{method} {path}"


def test_protected_routes_name_their_token() -> None:
    text = API_MD.read_text(encoding="utf-8")

    ingest = section(text, "## POST /api/v1/events")
    assert "Bearer token: agent token" in ingest
    for path in (
        "/api/v1/scores/inputs/{kind}",
        "/api/v1/scores/periods/{period}/close",
        "/api/v1/scores/periods/{period}/restate",
    ):
        assert "Bearer token: operator token" in section(text, f"## POST {path}")
        assert "role office" in section(text, f"## POST {path}")
    decision = section(text, "## POST /api/v1/scores/appeals/{appeal_id}/decision")
    assert "role supervisor" in decision
    assert "role department or office" in section(text, "## POST /api/v1/scores/appeals")
    assert "Bearer token: none (open)." in section(text, "## GET /api/v1/scores")
    assert "Bearer token: none (open)." in section(text, "## GET /api/v1/rates")


def test_a_route_reading_a_token_but_unknown_to_the_script_stops_it() -> None:
    extra = FastAPI()

    @extra.post("/api/v1/new-protected")
    def protected(authorization: Annotated[str | None, Header()] = None) -> None:
        return None

    with pytest.raises(SystemExit, match="Authorization header"):
        script().render(extra.openapi())


def test_parameters_bodies_and_responses_are_listed() -> None:
    text = API_MD.read_text(encoding="utf-8")
    cases = section(text, "## GET /api/v1/cases")
    assert "| `department` | query | no |" in cases
    assert "| 200 |" in cases
    appeal = section(text, "## POST /api/v1/scores/appeals")
    assert "Request body (required): `application/json` (AppealIn)." in appeal
    assert "| 201 |" in appeal
    assert "application/x-ndjson" in section(text, "## POST /api/v1/events")
    assert "### AppealIn" in text


def test_the_readme_links_the_reference() -> None:
    assert "docs/api.md" in (ROOT / "README.md").read_text(encoding="utf-8")
