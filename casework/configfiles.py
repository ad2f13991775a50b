"""Reading a configuration directory into a `Deployment` (the models are in `casework.config`).

`load_config(directory)` reads the four YAML files, validates each against its
model and cross-checks them. It reports every problem it finds, across all four
files, in one `ConfigErrors`; each `ConfigError` names the file (as the path was
given), the key path inside it (``items[3].sub_items[0].legal_days``), the
offending value and, where there is a fixed set, the valid choices.
"""

from __future__ import annotations

import difflib
from datetime import date
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from casework.config import (
    CATEGORIES,
    FILES,
    ITEM_KINDS,
    SHARED_KINDS,
    CalendarConfig,
    Department,
    Deployment,
    Item,
    Loc,
    Settings,
    _Model,
    _shown,
)
from casework.errors import ConfigError, ConfigErrors


class _DepartmentsFile(_Model):
    departments: tuple[Department, ...]


class _CatalogFile(_Model):
    items: tuple[Item, ...]


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | date) and key in seen:
            problem = f"found the key {_shown(key)!r} twice"
            raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        if isinstance(key, str | int | date):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:  # an impossible date such as 2026-02-30: validation names its key
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)

M = TypeVar("M", bound=BaseModel)

_CHOICES: dict[str, tuple[str, ...]] = {"category": CATEGORIES, "kind": ITEM_KINDS}
_PROBLEMS = {
    "missing": "this key is required",
    "int_type": "must be a whole number",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "a code is 1-64 letters, digits, '.', '-' or '_', "
    "starting with a letter or digit",
    "literal_error": "not a valid {field}",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "extra_forbidden": "unknown key; check its spelling",
    **dict.fromkeys(
        ("date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"),
        "must be a real date written YYYY-MM-DD",
    ),
}


def read_yaml(path: Path, errors: list[ConfigError]) -> dict[str, Any] | None:
    """The file's top-level mapping ({} for an empty file), or None after recording why not."""
    key, value = "", path.name
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except FileNotFoundError:
        problem = f"the file is missing; a configuration directory holds {', '.join(FILES)}"
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"the file cannot be read as UTF-8 text ({exc})"
    except yaml.MarkedYAMLError as exc:
        lines = text.splitlines()
        # The problem's own line, or where the construct began when the problem is at the end.
        marks = [m for m in (exc.problem_mark, exc.context_mark) if m and m.line < len(lines)]
        line = marks[0].line + 1 if marks else len(lines)
        key, value = f"line {line}", lines[line - 1].strip() if lines else ""
        while_ = f" {exc.context}" if exc.context else ""
        problem = f"not valid YAML: {exc.problem}{while_}"
    except yaml.YAMLError as exc:
        problem = f"the file is not valid YAML ({exc})"
    else:
        if data is None:
            return {}
        if isinstance(data, dict):
            return data
        problem, value = (
            "the file must hold a mapping of keys at the top level",
            type(data).__name__,
        )
    errors.append(ConfigError(str(path), key, value, problem))
    return None


def _key_path(data: Any, loc: Loc) -> str:
    """Pydantic's loc as a key path, walking the data: list indexes in brackets, keys dotted."""
    text, node = "", data
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, list) and isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
        try:
            node = node[part]
        except (LookupError, TypeError):
            node = None
    return text


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validated the mapping at `loc`, or None."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        else:  # a list index or a mapping key: the element type
            args = get_args(current)
            if not args:
                return None
            current = args[0] if get_origin(current) is tuple else args[-1]
        present = [a for a in get_args(current) if a is not type(None)]
        if get_origin(current) in (Union, UnionType) and len(present) == 1:
            current = present[0]  # X | None -> X
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def config_errors(
    path: str, model: type[BaseModel], data: Any, exc: ValidationError
) -> list[ConfigError]:
    """One ConfigError per problem in a pydantic ValidationError."""
    out: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx", {})
        if kind == "esup_rules":
            for suffix, value, problem in ctx["problems"]:
                out.append(ConfigError(path, _key_path(data, loc + suffix), value, problem))
            continue
        field = next((p for p in reversed(loc) if isinstance(p, str) and p != "[key]"), "")
        choices: tuple[str, ...] | None = None
        if kind == "literal_error":
            choices = _CHOICES.get(field)
        elif kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            choices = tuple(parent.model_fields) if parent else None
        if kind in _PROBLEMS:
            problem = _PROBLEMS[kind].format(field=field, **ctx)
        else:
            problem = err["msg"].removeprefix("Value error, ")
            problem = problem[:1].lower() + problem[1:]
        value = None if kind == "missing" else _shown(err["input"])
        out.append(ConfigError(path, _key_path(data, loc), value, problem, choices))
    return out


def _validate(model: type[M], data: Any, path: Path, errors: list[ConfigError]) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(config_errors(str(path), model, data, exc))
        return None


def _entries(
    path: Path, key: str, whole: type[M], errors: list[ConfigError]
) -> tuple[list[dict[str, Any]] | None, M | None]:
    """(raw list under `key` or None, validated file or None) of a file holding one list.

    The cross-reference checks run on the raw entries, so that an entry with a
    problem of its own is still checked against the others.
    """
    data = read_yaml(path, errors)
    if data is None:
        return None, None
    checked = _validate(whole, data, path, errors)
    raw = data.get(key)
    if not isinstance(raw, list):
        return None, checked
    # Entries that are not mappings become {} so that the others keep their indexes.
    return [e if isinstance(e, dict) else {} for e in raw], checked


def _duplicates(path: Path, codes: list[tuple[str, Any]], what: str) -> list[ConfigError]:
    """Errors for codes defined twice; `codes` is (key path, code) in file order."""
    first: dict[str, str] = {}
    out = []
    for key, code in codes:
        if not isinstance(code, str):
            continue  # a missing or mistyped code is reported by validation
        if code in first:
            problem = f"duplicate {what} code; it is already defined at {first[code]}"
            out.append(ConfigError(str(path), key, code, problem))
        first.setdefault(code, key)
    return out


def _check_catalog(
    path: Path, raw: list[dict[str, Any]], departments: set[str] | None, where: Path
) -> list[ConfigError]:
    """Duplicate item and sub-item codes, and each item's department (None: not known)."""
    codes: list[tuple[str, Any]] = []
    out: list[ConfigError] = []
    for i, item in enumerate(raw):
        codes.append((f"items[{i}].code", item.get("code")))
        subs = item.get("sub_items")
        for k, sub in enumerate(subs if isinstance(subs, list) else ()):
            codes.append(
                (
                    f"items[{i}].sub_items[{k}].code",
                    sub.get("code") if isinstance(sub, dict) else None,
                )
            )
        key, code, kind = f"items[{i}].department", item.get("department"), item.get("kind")
        if code is None and kind in ITEM_KINDS and kind not in SHARED_KINDS:
            problem = f"an item of kind {kind!r} needs its department's code; only petition and "
            out.append(ConfigError(str(path), key, None, problem + "instruction items may omit it"))
        elif isinstance(code, str) and departments is not None and code not in departments:
            near = difflib.get_close_matches(code, sorted(departments), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problem = f"unknown department code; departments are defined in {where}{hint}"
            out.append(ConfigError(str(path), key, code, problem))
    return _duplicates(path, codes, "item or sub-item") + out


def load_config(directory: Path) -> Deployment:
    """Read, validate and cross-check the configuration directory `directory`.

    Raises `ConfigErrors` listing every problem in every file, in file order
    (esup.yaml, departments.yaml, catalog.yaml, calendar.yaml). Reads those four
    files and nothing else.
    """
    directory = Path(directory)
    if not directory.is_dir():
        problem = f"there is no configuration directory here; it holds {', '.join(FILES)}"
        raise ConfigErrors([ConfigError(str(directory), "", str(directory), problem)])
    errors: list[ConfigError] = []
    paths = {name: directory / name for name in FILES}

    data = read_yaml(paths["esup.yaml"], errors)
    settings = None if data is None else _validate(Settings, data, paths["esup.yaml"], errors)

    where = paths["departments.yaml"]
    raw, departments = _entries(where, "departments", _DepartmentsFile, errors)
    codes = [(f"departments[{i}].code", d.get("code")) for i, d in enumerate(raw or ())]
    errors += _duplicates(where, codes, "department")
    known = None if raw is None else {c for _, c in codes if isinstance(c, str)}

    raw, catalog = _entries(paths["catalog.yaml"], "items", _CatalogFile, errors)
    errors += _check_catalog(paths["catalog.yaml"], raw or [], known, where)

    data = read_yaml(paths["calendar.yaml"], errors)
    calendar = (
        None if data is None else _validate(CalendarConfig, data, paths["calendar.yaml"], errors)
    )

    if errors or settings is None or departments is None or catalog is None or calendar is None:
        raise ConfigErrors(errors)
    return Deployment(
        directory=directory,
        settings=settings,
        departments=departments.departments,
        items=catalog.items,
        calendar=calendar,
    )
