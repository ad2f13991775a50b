"""Loading a configuration directory: the shipped reference city, and every kind of problem."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pydantic
import pytest

from casework.clock import Limits
from casework.config import (
    CATEGORIES,
    ITEM_KINDS,
    CalendarConfig,
    CalendarWindow,
    Department,
    Deployment,
    Item,
    Settings,
    SubItem,
    UnknownCodeError,
    YearDays,
)
from casework.configfiles import load_config
from casework.errors import ConfigError, ConfigErrors, EsupError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config"
FILES = ("esup.yaml", "departments.yaml", "catalog.yaml", "calendar.yaml")

ESUP = "city: 测试市\nwarn_days: 2\n"
DEPARTMENTS = """\
departments:
  - {code: fgw, name: 市发展和改革委员会, category: government, supervised: true}
  - {code: scjg, name: 市市场监督管理局, category: government, supervised: true,
     contact: "https://hooks.example/scjg"}
  - {code: zgh, name: 市总工会, category: party_mass}
"""
CATALOG = """\
items:
  - code: fgw-001
    name: 企业投资项目核准
    department: fgw
    kind: approval
    promised_days: 10
    legal_days: 20
    sub_items:
      - {code: fgw-001-01, name: 企业投资项目核准（核准）}
      - {code: fgw-001-02, name: 企业投资项目核准（变更）, promised_days: 5, warn_days: 1}
  - {code: scjg-001, name: 食品经营许可, department: scjg, kind: approval,
     promised_days: 5, legal_days: 10, warn_days: 3}
  - {code: rx-zx, name: 咨询, department: null, kind: petition, promised_days: 3, legal_days: 3}
  - {code: ps-jj, name: 市领导批示件（紧急）, kind: instruction, promised_days: 2, legal_days: 3}
"""
CALENDAR = """\
years:
  2027:
    source: 国务院办公厅关于2027年部分节假日安排的通知
    holidays: [2027-01-01, 2027-02-08]
    workdays: [2027-02-14]
holidays: [2026-07-15]
"""


def write(directory: Path, **files: str | None) -> Path:
    """A valid small configuration directory; `name_yaml="..."` replaces a file, None removes it."""
    directory.mkdir(exist_ok=True)
    texts = {"esup.yaml": ESUP, "departments.yaml": DEPARTMENTS}
    texts |= {"catalog.yaml": CATALOG, "calendar.yaml": CALENDAR}
    for key, text in files.items():
        texts[key.replace("_yaml", ".yaml")] = text
    for name, text in texts.items():
        if text is not None:
            (directory / name).write_text(text, encoding="utf-8")
    return directory


def problems(directory: Path) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load_config(directory)
    return list(info.value.errors)


def only(directory: Path) -> ConfigError:
    found = problems(directory)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def assert_names(error: ConfigError, path: Path, key: str, value: Any) -> None:
    """The error and its message name the file, the key path and the offending value."""
    assert (error.path, error.key, error.value) == (str(path), key, value)
    message = str(error)
    assert str(path) in message
    assert key in message
    assert repr(value) in message


# -- the shipped reference city -----------------------------------------------------------


@pytest.fixture(scope="module")
def city() -> Deployment:
    return load_config(SHIPPED)


def test_reference_city_has_the_published_figures(city: Deployment) -> None:
    approvals = city.items_of_kind("approval")
    assert len(city.departments) == 94
    assert len(city.supervised_departments()) == 43
    assert len(approvals) == 170
    assert sum(len(i.sub_items) for i in approvals) == 181
    assert sum(len(i.sub_items) for i in city.items) == 181
    assert Counter(d.category for d in city.departments) == {
        "government": 48,
        "party_mass": 26,
        "stationed": 20,
    }


def test_reference_city_approval_items_belong_to_supervised_departments(city: Deployment) -> None:
    for item in city.items_of_kind("approval"):
        assert item.department is not None
        assert city.department(item.department).supervised, item.code
    assert sum(len(city.items_of(d.code)) for d in city.supervised_departments()) == 170


def test_reference_city_limits_are_consistent(city: Deployment) -> None:
    codes = [i.code for i in city.items] + [s.code for i in city.items for s in i.sub_items]
    assert len(codes) == len(set(codes))
    for code in codes:
        limits = city.limits(code)
        assert 0 <= limits.promised_days <= limits.legal_days, code
        assert limits.warn_days >= 0
    assert any(city.limits(c) == Limits(0, 0, 2) for c in codes), "no immediate item (即办件)"


def test_reference_city_has_shared_petition_and_instruction_kinds(city: Deployment) -> None:
    petitions = city.items_of_kind("petition")
    instructions = city.items_of_kind("instruction")
    assert len(petitions) == 5
    assert len(instructions) == 2
    assert all(i.department is None for i in petitions + instructions)
    assert city.settings.city
    assert city.settings.timezone == "Asia/Shanghai"
    assert city.calendar.configured_years() == ()


def test_generator_reproduces_the_shipped_files(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "make_reference_city.py"
    run = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


# -- a small valid directory and the look-ups ---------------------------------------------


def test_small_directory_loads_with_inheritance_and_defaults(tmp_path: Path) -> None:
    deployment = load_config(write(tmp_path / "c"))
    assert deployment.directory == tmp_path / "c"
    assert deployment.limits("fgw-001") == Limits(10, 20, 2)  # warn_days from esup.yaml
    assert deployment.limits("fgw-001-01") == Limits(10, 20, 2)  # everything inherited
    assert deployment.limits("fgw-001-02") == Limits(5, 20, 1)  # legal inherited
    assert deployment.limits("scjg-001") == Limits(5, 10, 3)
    sub = deployment.item("fgw-001-02")
    assert isinstance(sub, SubItem)
    assert deployment.parent_item("fgw-001-02").code == "fgw-001"
    assert deployment.department("scjg").contact == "https://hooks.example/scjg"
    assert [i.code for i in deployment.items_of("fgw")] == ["fgw-001"]
    assert deployment.items_of("zgh") == ()
    assert [d.code for d in deployment.supervised_departments()] == ["fgw", "scjg"]
    assert deployment.settings.procedure_warn_days == 2


def test_calendar_years_and_overrides_load(tmp_path: Path) -> None:
    calendar = load_config(write(tmp_path / "c")).calendar
    assert calendar.configured_years() == (2027,)
    assert calendar.years[2027].holidays == (date(2027, 1, 1), date(2027, 2, 8))
    assert calendar.years[2027].workdays == (date(2027, 2, 14),)
    assert calendar.holidays == (date(2026, 7, 15),)
    assert (calendar.window.first_year, calendar.window.last_year) == (2000, 2099)


def test_unknown_codes_raise_a_lookup_error_naming_the_code_and_the_file(tmp_path: Path) -> None:
    deployment = load_config(write(tmp_path / "c"))
    with pytest.raises(UnknownCodeError) as info:
        deployment.department("nope")
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, EsupError)
    assert "'nope'" in str(info.value)
    assert str(tmp_path / "c" / "departments.yaml") in str(info.value)
    with pytest.raises(LookupError, match=r"'fgw-009'.*catalog\.yaml"):
        deployment.limits("fgw-009")
    with pytest.raises(LookupError, match="'nope'"):
        deployment.items_of("nope")


def test_models_are_frozen(tmp_path: Path) -> None:
    deployment = load_config(write(tmp_path / "c"))
    with pytest.raises(pydantic.ValidationError):
        deployment.settings.warn_days = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        deployment.departments[0].supervised = False  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        deployment.items[0].sub_items[0].promised_days = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        deployment.calendar.years[2028] = deployment.calendar.years[2027]  # type: ignore[index]
    assert isinstance(deployment.items, tuple)
    assert isinstance(deployment.items[0].sub_items, tuple)


def test_constants_match_the_models() -> None:
    assert CATEGORIES == ("government", "party_mass", "stationed")
    assert ITEM_KINDS == ("approval", "petition", "instruction")
    Department(code="x", name="x", category="stationed")
    with pytest.raises(pydantic.ValidationError):
        Item(code="x", name="x", kind="approval", promised_days=5, legal_days=3)
    with pytest.raises(pydantic.ValidationError):
        CalendarConfig.model_validate({"holidays": [date(2026, 1, 1)], "workdays": ["2026-01-01"]})


def test_every_key_and_choice_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    models = (Settings, Department, Item, SubItem, YearDays, CalendarWindow, CalendarConfig)
    for model in (*models, Deployment):
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name}"
    for choice in CATEGORIES + ITEM_KINDS:
        assert f"`{choice}`" in doc, choice
    for name in FILES:
        assert f"`{name}`" in doc, name


# -- one test per kind of problem ---------------------------------------------------------


def test_unknown_category_lists_the_valid_choices(tmp_path: Path) -> None:
    d = write(tmp_path / "c", departments_yaml=DEPARTMENTS.replace("party_mass", "party"))
    error = only(d)
    assert_names(error, d / "departments.yaml", "departments[2].category", "party")
    assert error.choices == CATEGORIES
    assert "'government', 'party_mass', 'stationed'" in str(error)


def test_item_with_unknown_department(tmp_path: Path) -> None:
    d = write(tmp_path / "c", catalog_yaml=CATALOG.replace("department: scjg", "department: sjcg"))
    error = only(d)
    assert_names(error, d / "catalog.yaml", "items[1].department", "sjcg")
    assert "departments.yaml" in error.problem
    assert "did you mean 'scjg'" in error.problem


def test_approval_item_needs_a_department_but_shared_kinds_do_not(tmp_path: Path) -> None:
    d = write(tmp_path / "c", catalog_yaml=CATALOG.replace("department: scjg", "department: null"))
    error = only(d)
    assert_names(error, d / "catalog.yaml", "items[1].department", None)
    assert "petition and instruction" in error.problem


def test_legal_shorter_than_promised_after_inheritance(tmp_path: Path) -> None:
    # The sub-item sets legal 8 but inherits promised 10 from its item.
    catalog = CATALOG.replace(
        "name: 企业投资项目核准（核准）}", "name: 企业投资项目核准（核准）, legal_days: 8}"
    )
    d = write(tmp_path / "c", catalog_yaml=catalog)
    error = only(d)
    assert_names(error, d / "catalog.yaml", "items[0].sub_items[0].legal_days", 8)
    assert "inherited" in error.problem


def test_sub_item_promise_longer_than_the_inherited_legal_limit(tmp_path: Path) -> None:
    catalog = CATALOG.replace("promised_days: 5, warn_days: 1", "promised_days: 25, warn_days: 1")
    d = write(tmp_path / "c", catalog_yaml=catalog)
    assert_names(only(d), d / "catalog.yaml", "items[0].sub_items[1].promised_days", 25)


def test_item_legal_shorter_than_promised(tmp_path: Path) -> None:
    catalog = CATALOG.replace("promised_days: 5, legal_days: 10", "promised_days: 5, legal_days: 4")
    d = write(tmp_path / "c", catalog_yaml=catalog)
    assert_names(only(d), d / "catalog.yaml", "items[1].legal_days", 4)


def test_duplicate_codes(tmp_path: Path) -> None:
    departments = DEPARTMENTS.replace("code: zgh", "code: fgw")
    catalog = CATALOG.replace("code: scjg-001", "code: fgw-001-02")  # an item reusing a sub-item's
    d = write(tmp_path / "c", departments_yaml=departments, catalog_yaml=catalog)
    department, item = problems(d)
    assert_names(department, d / "departments.yaml", "departments[2].code", "fgw")
    assert "departments[0].code" in department.problem
    assert_names(item, d / "catalog.yaml", "items[1].code", "fgw-001-02")
    assert "items[0].sub_items[1].code" in item.problem


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    d = write(tmp_path / "c", esup_yaml="city: 测试市\nwarn_days: 2: 3\n")
    error = only(d)
    assert_names(error, d / "esup.yaml", "line 2", "warn_days: 2: 3")
    assert "not valid YAML" in str(error)


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    d = write(tmp_path / "c", esup_yaml="city: 测试市\nwarn_days: 2\nwarn_days: 3\n")
    assert_names(only(d), d / "esup.yaml", "line 3", "warn_days: 3")


def test_missing_file(tmp_path: Path) -> None:
    d = write(tmp_path / "c", calendar_yaml=None)
    error = only(d)
    assert error.path == str(d / "calendar.yaml")
    assert "missing" in str(error)
    assert str(d / "calendar.yaml") in str(error)


def test_missing_directory(tmp_path: Path) -> None:
    error = only(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(error)


def test_calendar_date_outside_its_year(tmp_path: Path) -> None:
    d = write(tmp_path / "c", calendar_yaml=CALENDAR.replace("2027-02-08", "2026-02-08"))
    error = only(d)
    assert_names(error, d / "calendar.yaml", "years.2027.holidays[1]", "2026-02-08")
    assert "not in 2027" in error.problem


def test_calendar_date_both_holiday_and_workday(tmp_path: Path) -> None:
    d = write(tmp_path / "c", calendar_yaml=CALENDAR + "workdays: [2027-02-08]\n")
    error = only(d)
    assert_names(error, d / "calendar.yaml", "workdays[0]", "2027-02-08")
    assert "years.2027.holidays[1]" in error.problem


def test_calendar_year_outside_the_window(tmp_path: Path) -> None:
    calendar = CALENDAR + "window: {first_year: 2028, last_year: 2099}\n"
    d = write(tmp_path / "c", calendar_yaml=calendar.replace("holidays: [2026-07-15]\n", ""))
    assert_names(only(d), d / "calendar.yaml", "years.2027", 2027)


def test_calendar_year_key_must_be_a_year(tmp_path: Path) -> None:
    d = write(tmp_path / "c", calendar_yaml=CALENDAR.replace("  2027:", "  next:"))
    assert_names(only(d), d / "calendar.yaml", "years.next", "next")


def test_invalid_timezone(tmp_path: Path) -> None:
    d = write(tmp_path / "c", esup_yaml=ESUP + "timezone: Asia/Shanghia\n")
    error = only(d)
    assert_names(error, d / "esup.yaml", "timezone", "Asia/Shanghia")
    assert "time zone" in error.problem


def test_wrong_type(tmp_path: Path) -> None:
    d = write(
        tmp_path / "c", catalog_yaml=CATALOG.replace("promised_days: 10", "promised_days: ten")
    )
    error = only(d)
    assert_names(error, d / "catalog.yaml", "items[0].promised_days", "ten")
    assert "whole number" in error.problem


def test_negative_limit_and_missing_key(tmp_path: Path) -> None:
    d = write(tmp_path / "c", esup_yaml="warn_days: -1\n")
    missing, negative = problems(d)
    assert_names(missing, d / "esup.yaml", "city", None)
    assert_names(negative, d / "esup.yaml", "warn_days", -1)


def test_unknown_key_lists_the_valid_keys(tmp_path: Path) -> None:
    catalog = CATALOG.replace("legal_days: 20\n", "legal_days: 20\n    legal_day: 20\n")
    error = only(write(tmp_path / "c", catalog_yaml=catalog))
    assert error.key == "items[0].legal_day"
    assert "legal_days" in error.choices


def test_problems_in_every_file_are_reported_together(tmp_path: Path) -> None:
    d = write(
        tmp_path / "c",
        esup_yaml="city: 测试市\ntimezone: Mars/Olympus\n",
        departments_yaml=DEPARTMENTS.replace("category: party_mass", "category: ngo"),
        catalog_yaml=CATALOG.replace("kind: petition", "kind: hotline"),
        calendar_yaml=CALENDAR.replace("2027-02-14", "2028-02-14"),
    )
    found = problems(d)
    assert [(Path(e.path).name, e.key) for e in found] == [
        ("esup.yaml", "timezone"),
        ("departments.yaml", "departments[2].category"),
        ("catalog.yaml", "items[2].kind"),
        ("calendar.yaml", "years.2027.workdays[0]"),
    ]
    with pytest.raises(ConfigErrors) as info:
        load_config(d)
    assert "4 configuration problem(s)" in str(info.value)
