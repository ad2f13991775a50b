"""A deployment's configuration: settings, departments, catalog and calendar.

A configuration directory holds four YAML files (docs/configuration.md is the
reference for every key):

    esup.yaml         city, time zone, default warning thresholds   -> Settings
    departments.yaml  the departments and their category            -> Department
    catalog.yaml      items (事项) and their sub-items with limits  -> Item, SubItem
    calendar.yaml     holidays and make-up working days by year     -> CalendarConfig

`casework.configfiles.load_config(directory)` reads them into one frozen
`Deployment`. Every model is frozen and holds tuples (the calendar's years a
read-only mapping), so a loaded deployment can be shared freely. All limits are
working days.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from casework.clock import Limits
from casework.errors import EsupError

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
    """A whole, cross-checked configuration directory, as `configfiles.load_config` returns it.

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
