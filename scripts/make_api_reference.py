"""Write docs/api.md, the HTTP API reference, from the server's own OpenAPI document.

    python scripts/make_api_reference.py [--check] [OUTPUT]

Builds the application as `esup-server run` does (`create_app` with the
default `ServerSettings` and the shipped config/), on an in-memory SQLite
engine, and renders every path and method of `app.openapi()`: summary,
description, parameters, request body, responses and the bearer token the
route needs. The output is deterministic (no version, no date), so that
tests/test_api_reference.py can compare the committed file with it.
`--check` writes nothing and exits 1 when OUTPUT differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
REGENERATE = "python scripts/make_api_reference.py"

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

AGENT_TOKEN = "agent token (`esup-server token create --agent NAME`)"


def _operator(*roles: str) -> str:
    return f"operator token (`esup-server operator create`), role {' or '.join(roles)}"


#: The token each route that reads an ``Authorization`` header needs (server/api/ingest.py,
#: server/api/scores.py). A route reading that header but missing here makes the script fail,
#: so a new protected route cannot be documented as open.
AUTH: Mapping[tuple[str, str], str] = {
    ("POST", "/api/v1/events"): AGENT_TOKEN,
    ("POST", "/api/v1/scores/inputs/{kind}"): _operator("office"),
    ("POST", "/api/v1/scores/appeals"): _operator("department", "office")
    + "; a department operator appeals for its own department only",
    ("POST", "/api/v1/scores/appeals/{appeal_id}/decision"): _operator("supervisor"),
    ("POST", "/api/v1/scores/periods/{period}/close"): _operator("office"),
    ("POST", "/api/v1/scores/periods/{period}/restate"): _operator("office"),
}

#: Request bodies a route reads raw, so that OpenAPI cannot show them (server/api/ingest.py
#: reads the body itself to cap its size and decompress gzip; casework.batches.parse_batch).
RAW_BODIES: Mapping[tuple[str, str], str] = {
    ("POST", "/api/v1/events"): (
        "`application/json` (a JSON array of events, or one event) or JSON Lines "
        "(`application/x-ndjson`, `application/ndjson`, `application/jsonl`, "
        "`application/x-jsonlines`); `Content-Encoding: gzip` allowed; the wire format "
        "is docs/wire-format.md"
    ),
}

INTRO = """\
# HTTP API reference

Generated from the server's OpenAPI document by `{regenerate}`; do not edit
by hand (tests/test_api_reference.py fails when this file and the script's
output differ). The running server serves the same document at
`/openapi.json` and an interactive view at `/docs`.

Reading is open. A route that needs a bearer token says which one: agents send
their **agent token** (`esup-server token create --agent NAME`) to the ingest;
the scores' inputs, appeals and periods need an **operator token**
(`esup-server operator create`) of the role named. Send it as
`Authorization: Bearer <token>`; no or an unknown token is 401, a role that may
not do it 403. Errors are JSON objects with a `reason` (or, for FastAPI's own
parameter checks, `detail`).

Routes:

"""


def build_app() -> FastAPI:
    """The server application on the shipped config/ and an in-memory SQLite engine."""
    sys.path.insert(0, str(ROOT))
    from server.app import create_app
    from server.settings import ServerSettings
    from server.store.database import make_engine

    engine = make_engine("sqlite://")
    settings = ServerSettings(config_dir=ROOT / "config")
    return create_app(settings, engine=engine)


def operations(spec: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation, in the document's path order."""
    found = []
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                found.append((method.upper(), path, item[method]))
    return found


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def schema_type(schema: Mapping[str, Any]) -> str:
    """A short name for a JSON schema: `string`, `integer or null`, `array of X`, `X`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(schema_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return "object" if extra is True else f"object of {schema_type(extra)}"
    if kind is None:
        return "any"
    return str(kind)


def _parameters(operation: Mapping[str, Any]) -> list[str]:
    params = operation.get("parameters", [])
    if not params:
        return []
    lines = [
        "Parameters:",
        "",
        "| name | in | required | type | description |",
        "|---|---|---|---|---|",
    ]
    for p in params:
        schema = p.get("schema", {})
        description = p.get("description") or schema.get("description") or ""
        if p["in"] == "header" and p["name"].lower() == "authorization":
            description = description or "`Bearer <token>`"
        required = "yes" if p.get("required") else "no"
        default = schema.get("default")
        if default is not None:
            description = f"{description} (default `{default}`)".strip()
        lines.append(
            f"| `{p['name']}` | {p['in']} | {required} | {_cell(schema_type(schema))} "
            f"| {_cell(description)} |"
        )
    return [*lines, ""]


def _body(method: str, path: str, operation: Mapping[str, Any]) -> list[str]:
    body = operation.get("requestBody")
    if body is None:
        raw = RAW_BODIES.get((method, path))
        return [f"Request body: {raw}.", ""] if raw else []
    required = "required" if body.get("required") else "optional"
    media = [
        f"`{m}` ({schema_type(c.get('schema', {}))})" for m, c in sorted(body["content"].items())
    ]
    return [f"Request body ({required}): {', '.join(media)}.", ""]


def _responses(operation: Mapping[str, Any]) -> list[str]:
    lines = ["Responses:", "", "| status | description | content |", "|---|---|---|"]
    for status, response in sorted(operation.get("responses", {}).items()):
        content = response.get("content", {})
        media = ", ".join(
            f"`{m}`" + (f" ({schema_type(c['schema'])})" if c.get("schema") else "")
            for m, c in sorted(content.items())
        )
        lines.append(f"| {status} | {_cell(response.get('description', ''))} | {_cell(media)} |")
    return [*lines, ""]


def _auth(method: str, path: str, operation: Mapping[str, Any]) -> str:
    header = any(
        p["in"] == "header" and p["name"].lower() == "authorization"
        for p in operation.get("parameters", [])
    )
    token = AUTH.get((method, path))
    if header and token is None:
        raise SystemExit(
            f"{method} {path} reads an Authorization header: add it to AUTH in {__file__}"
        )
    if token is not None and not header:
        raise SystemExit(f"{method} {path} is in AUTH but reads no Authorization header")
    return f"Bearer token: {token}." if token else "Bearer token: none (open)."


def _anchor(method: str, path: str) -> str:
    text = f"{method} {path}".lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _schemas(spec: Mapping[str, Any]) -> list[str]:
    schemas = spec.get("components", {}).get("schemas", {})
    lines = ["## Schemas", ""]
    for name in sorted(schemas):
        schema = schemas[name]
        lines += [f"### {name}", ""]
        if schema.get("description"):
            lines += [_cell(schema["description"]), ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            lines += ["| field | type | required | description |", "|---|---|---|---|"]
            for field, sub in properties.items():
                flag = "yes" if field in required else "no"
                lines.append(
                    f"| `{field}` | {_cell(schema_type(sub))} | {flag} "
                    f"| {_cell(sub.get('description', ''))} |"
                )
            lines.append("")
        else:
            lines += [f"Type: {schema_type(schema)}.", ""]
    return lines


def render(spec: Mapping[str, Any]) -> str:
    """docs/api.md for the OpenAPI document `spec`."""
    ops = operations(spec)
    lines = [INTRO.format(regenerate=REGENERATE).rstrip("\n"), ""]
    for method, path, operation in ops:
        lines.append(
            f"- [`{method} {path}`](#{_anchor(method, path)}) — "
            f"{_cell(operation.get('summary', ''))}"
        )
    lines.append("")
    for method, path, operation in ops:
        lines += [f"## {method} {path}", ""]
        if operation.get("summary"):
            lines += [f"**{_cell(operation['summary'])}**", ""]
        if operation.get("description"):
            lines += [operation["description"].strip(), ""]
        lines += [_auth(method, path, operation), ""]
        lines += _parameters(operation)
        lines += _body(method, path, operation)
        lines += _responses(operation)
    lines += _schemas(spec)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if OUTPUT is not current")
    args = parser.parse_args(argv)
    text = render(build_app().openapi())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
