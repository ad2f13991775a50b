"""A deployment's configuration: settings, departments, catalog and calendar.

A configuration directory holds four YAML files (docs/configuration.md is the
reference for every key):

    esup.yaml         city, time zone, default warning thresholds   -> Settings
    departments.yaml  the departments and their category            -> Department
    catalog.yaml      items (事项) and their sub-items with limits  -> Item, SubItem
    calendar.yaml     holidays and make-up working days by year     -> CalendarConfig

`load_config(directory)` reads them into one frozen `Deployment`. It reports
every problem it finds, across all four files, in one `ConfigErrors`; each
`ConfigError` names the file (as the path was given), the key path inside it
(``items[3].sub_items[0].legal_days``), the offending value and, where there is
a fixed set, the valid choices. Every model is frozen and holds tuples (the
calendar's years a read-only mapping), so a loaded deployment can be shared
freely. All limits are working days.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from casework.clock import Limits
from casework.errors import ConfigError, ConfigErrors, EsupError

Category = Literal["government", "party_mass", "stationed"]
ItemKind = Literal["approval", "petition", "instruction"]

#: Department categories: 政府部门, 党群部门, 驻市单位.
CATEGORIES: tuple[Category, ...] = ("government", "party_mass", "stationed")
#: Item kinds: 审批事项, 12345 hotline petition categories (诉求), leader instructions (批示件).
ITEM_KINDS: tuple[ItemKind, ...] = ("approval", "petition", "instruction")
#: The kinds whose items may leave `department` empty: any department may handle them.
SHARED_KINDS: tuple[ItemKind, ...] = ("petition", "instruction")
#: The files of a configuration directory, in the order they are read and reported.
FILES = ("esup.yaml", "departments.yaml", "catalog.yaml", "calendar.yaml")

Code = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Name = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]
Days = Annotated[int, Strict(), Field(ge=0)]
Year = Annotated[int, Strict(), Field(ge=1900, le=2200)]
Day = Annotated[date, Field(strict=False)]  # YAML gives dates; "2027-01-01" strings are fine too
Loc = tuple[str | int, ...]

_CONTACT = re.compile(r"^(https?://\S+|[^@\s]+@[^@\s]+\.[^@\s]+)$")


class UnknownCodeError(EsupError, LookupError):
    """A department or item code that the configuration does not define."""

    def __init__(self, what: str, code: str, where: str) -> None:
        self.what = what
        self.code = code
        self.where = where
        super().__init__(f"No {what} has the code {code!r}; {what} codes are defined in {where}.")


def _shown(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


class _Problems(list[tuple[Loc, Any, str]]):
    """Rule violations a model validator found: (key path below the model, value, sentence)."""

    def add(self, loc: Loc, value: Any, problem: str) -> None:
        self.append((loc, _shown(value), problem))

    def raise_any(self) -> None:
        """Raise them as one validation error; the loader makes a ConfigError of each."""
        if self:
            more = f" (and {len(self) - 1} more)" if len(self) > 1 else ""
            ctx = {"first": self[0][2] + more, "problems": tuple(self)}
            raise PydanticCustomError("esup_rules", "{first}", ctx)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Settings(_Model):
    """esup.yaml: the deployment-wide settings."""

    city: Name
    timezone: Annotated[str, Strict()] = "Asia/Shanghai"
    warn_days: Days = 2
    procedure_warn_days: Days = 2

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not a known IANA time zone; use a name like 'Asia/Shanghai'") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The time zone local dates are counted in."""
        return ZoneInfo(self.timezone)


class Department(_Model):
    """One department (部门) from departments.yaml."""

    code: Code
    name: Name
    category: Category
    supervised: Annotated[bool, Strict()] = False
    contact: Annotated[str, Strict()] | None = None

    @field_validator("contact")
    @classmethod
    def _contact_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CONTACT.match(value):
            raise ValueError("a contact is an http(s) webhook URL or an e-mail address")
        return value


class SubItem(_Model):
    """A sub-item (子项) of an item; a limit left unset is inherited from the item."""

    code: Code
    name: Name
    promised_days: Days | None = None
    legal_days: Days | None = None
    warn_days: Days | None = None


class Item(_Model):
    """One catalog item (事项): approval item, petition category or instruction kind.

    Invariant: `legal_days >= promised_days`, for the item and, after
    inheritance, for every sub-item.
    """

    code: Code
    name: Name
    department: Code | None = None
    kind: ItemKind
    promised_days: Days
    legal_days: Days
    warn_days: Days | None = None
    sub_items: tuple[SubItem, ...] = ()

    def limits_of(self, sub: SubItem | None = None) -> tuple[int, int, int | None]:
        """(promised, legal, warn) of the item, or of `sub` with unset values inherited."""
        if sub is None:
            return self.promised_days, self.legal_days, self.warn_days
        return (
            self.promised_days if sub.promised_days is None else sub.promised_days,
            self.legal_days if sub.legal_days is None else sub.legal_days,
            self.warn_days if sub.warn_days is None else sub.warn_days,
        )

    @model_validator(mode="after")
    def _legal_not_shorter(self) -> Item:
        problems = _Problems()
        if self.legal_days < self.promised_days:
            why = f"shorter than the promised limit ({self.promised_days} days)"
            problems.add(("legal_days",), self.legal_days, f"the legal limit is {why}")
        for k, sub in enumerate(self.sub_items):
            promised, legal, _ = self.limits_of(sub)
            if legal >= promised or problems:  # an inconsistent item is reported once
                continue
            if sub.legal_days is not None:  # blame the value the sub-item sets itself
                field, value = "legal_days", legal
                why = f"legal limit is shorter than its promised limit ({promised} days"
                why += ", inherited from the item)" if sub.promised_days is None else ")"
            else:
                field, value = "promised_days", promised
                why = f"promised limit is longer than its legal limit ({legal} days, inherited)"
            problems.add(("sub_items", k, field), value, f"the sub-item's {why}")
        problems.raise_any()
        return self


class YearDays(_Model):
    """One year's holidays and make-up working days, as the State Council's notice gives them."""

    source: Name
    holidays: tuple[Day, ...] = ()
    workdays: tuple[Day, ...] = ()


class CalendarWindow(_Model):
    """The years the working-day calendar precomputes, both inclusive."""

    first_year: Year = 2000
    last_year: Year = 2099

    @model_validator(mode="after")
    def _ordered(self) -> CalendarWindow:
        problems = _Problems()
        if self.last_year < self.first_year:
            problems.add(
                ("last_year",), self.last_year, f"it is before first_year {self.first_year}"
            )
        problems.raise_any()
        return self


class CalendarConfig(_Model):
    """calendar.yaml: years added or replaced, and single-date overrides for any year.

    Invariants: a date under `years[Y]` lies in Y; no date is both a holiday and a
    working day; every year and date lies inside `window`.
    """

    years: Mapping[Annotated[int, Strict()], YearDays] = Field(default_factory=dict)
    holidays: tuple[Day, ...] = ()
    workdays: tuple[Day, ...] = ()
    window: CalendarWindow = Field(default_factory=CalendarWindow)

    @field_validator("years")
    @classmethod
    def _read_only(cls, value: Mapping[int, YearDays]) -> Mapping[int, YearDays]:
        return MappingProxyType(dict(sorted(value.items())))

    @field_serializer("years")
    def _plain_years(self, value: Mapping[int, YearDays]) -> dict[int, YearDays]:
        return dict(value)

    @model_validator(mode="after")
    def _dates_consistent(self) -> CalendarConfig:
        first, last = self.window.first_year, self.window.last_year
        outside = f"outside the calendar window {first}..{last}; widen window or remove it"
        problems = _Problems()
        dated: list[tuple[Loc, date]] = []
        for year, entry in self.years.items():
            if not first <= year <= last:
                problems.add(("years", year), year, f"the year is {outside}")
            for loc, day in _dates(("years", year), entry):
                if day.year == year:
                    dated.append((loc, day))
                else:
                    problems.add(loc, day, f"the date is not in {year}; list it under its year")
        for loc, day in _dates((), self):
            if first <= day.year <= last:
                dated.append((loc, day))
            else:
                problems.add(loc, day, f"the date is {outside}")
        holidays: dict[date, Loc] = {}
        for loc, day in dated:
            if "holidays" in loc:
                holidays.setdefault(day, loc)
        for loc, day in dated:
            if "workdays" in loc and day in holidays:
                where = _loc_text(holidays[day])
                problems.add(loc, day, f"the date is also a holiday at {where}; keep one of them")
        problems.raise_any()
        return self

    def configured_years(self) -> tuple[int, ...]:
        """The years the configuration covers itself, ascending."""
        return tuple(self.years)


def _dates(prefix: Loc, entry: YearDays | CalendarConfig) -> list[tuple[Loc, date]]:
    """Every holiday and make-up day of `entry` with its key path."""
    holidays = [((*prefix, "holidays", i), d) for i, d in enumerate(entry.holidays)]
    return holidays + [((*prefix, "workdays", i), d) for i, d in enumerate(entry.workdays)]


def _loc_text(loc: Loc) -> str:
    """``("years", 2027, "holidays", 3)`` -> ``years.2027.holidays[3]`` (calendar paths)."""
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and loc[i - 1] in ("holidays", "workdays"):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class Deployment(_Model):
    """A whole, cross-checked configuration directory, as `load_config` returns it.

    Look-ups by code use dictionaries built once; an unknown code raises
    `UnknownCodeError` (a `LookupError`).
    """

    directory: Path
    settings: Settings
    departments: tuple[Department, ...]
    items: tuple[Item, ...]
    calendar: CalendarConfig

    @functools.cached_property
    def _department_index(self) -> dict[str, Department]:
        return {d.code: d for d in self.departments}

    @functools.cached_property
    def _item_index(self) -> dict[str, tuple[Item, SubItem | None]]:
        index: dict[str, tuple[Item, SubItem | None]] = {}
        for item in self.items:
            index[item.code] = (item, None)
            index.update((sub.code, (item, sub)) for sub in item.sub_items)
        return index

    def department(self, code: str) -> Department:
        """The department with this code."""
        if code not in self._department_index:
            raise UnknownCodeError("department", code, str(self.directory / "departments.yaml"))
        return self._department_index[code]

    def _entry(self, code: str) -> tuple[Item, SubItem | None]:
        if code not in self._item_index:
            raise UnknownCodeError("item", code, str(self.directory / "catalog.yaml"))
        return self._item_index[code]

    def item(self, code: str) -> Item | SubItem:
        """The item or sub-item with this code."""
        item, sub = self._entry(code)
        return item if sub is None else sub

    def parent_item(self, code: str) -> Item:
        """The item itself for an item code; the item it belongs to for a sub-item code."""
        return self._entry(code)[0]

    def limits(self, code: str) -> Limits:
        """The limits of an item or sub-item, in working days, as the clock uses them.

        A sub-item inherits each limit it leaves unset from its item; a `warn_days`
        set on neither falls back to `settings.warn_days`.
        """
        item, sub = self._entry(code)
        promised, legal, warn = item.limits_of(sub)
        return Limits(promised, legal, self.settings.warn_days if warn is None else warn)

    def supervised_departments(self) -> tuple[Department, ...]:
        """The departments under electronic supervision, in file order."""
        return tuple(d for d in self.departments if d.supervised)

    def items_of(self, department_code: str) -> tuple[Item, ...]:
        """The items a department owns, in file order (shared kinds with no department apart)."""
        self.department(department_code)
        return tuple(i for i in self.items if i.department == department_code)

    def items_of_kind(self, kind: ItemKind) -> tuple[Item, ...]:
        """The items of one kind, in file order."""
        return tuple(i for i in self.items if i.kind == kind)


# -- loading ----------------------------------------------------------------------------------


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


def _read_yaml(path: Path, errors: list[ConfigError]) -> dict[str, Any] | None:
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


def _convert(
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
        errors.extend(_convert(str(path), model, data, exc))
        return None


def _entries(
    path: Path, key: str, whole: type[M], errors: list[ConfigError]
) -> tuple[list[dict[str, Any]] | None, M | None]:
    """(raw list under `key` or None, validated file or None) of a file holding one list.

    The cross-reference checks run on the raw entries, so that an entry with a
    problem of its own is still checked against the others.
    """
    data = _read_yaml(path, errors)
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

    data = _read_yaml(paths["esup.yaml"], errors)
    settings = None if data is None else _validate(Settings, data, paths["esup.yaml"], errors)

    where = paths["departments.yaml"]
    raw, departments = _entries(where, "departments", _DepartmentsFile, errors)
    codes = [(f"departments[{i}].code", d.get("code")) for i, d in enumerate(raw or ())]
    errors += _duplicates(where, codes, "department")
    known = None if raw is None else {c for _, c in codes if isinstance(c, str)}

    raw, catalog = _entries(paths["catalog.yaml"], "items", _CatalogFile, errors)
    errors += _check_catalog(paths["catalog.yaml"], raw or [], known, where)

    data = _read_yaml(paths["calendar.yaml"], errors)
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
