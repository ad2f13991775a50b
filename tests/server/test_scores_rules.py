"""config/scores.yaml: the example is the defaults, and a bad value names file, key and value."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from casework.errors import ConfigErrors
from server.scores.rules import ScoreRules, load_rules, rules_for

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_the_example_file_holds_the_defaults() -> None:
    assert load_rules(CONFIG / "scores.yaml") == ScoreRules()


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    assert rules_for(tmp_path) == ScoreRules()


def test_reference_city_defaults() -> None:
    rules = ScoreRules()
    assert rules.weights["government"].platforms == 80
    assert rules.weights["stationed"].service_users == 80
    assert (rules.esupervision.yellow, rules.esupervision.red) == (5, 10)
    assert rules.esupervision.warning_run.length == 3
    assert [s.count for s in rules.staff_ladder.steps] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("text", "key", "value", "words"),
    [
        ("esupervision: {red: -1}", "esupervision.red", -1, "at least 0"),
        ("weights: {government: {platforms: 70, superior: 10, service_users: 10}}",
         "weights.government", None, "add up to 90"),
        ("thresholds: {satisfied: 80, basically_satisfied: 85}", "thresholds", None, "above"),
        ("feed: {cron: 'every monday'}", "feed", None, "cron"),
        ("esupervison: {}", "esupervison", {}, "unknown key"),
        ("accountability: {at_or_below: bad}", "accountability.at_or_below", "bad", ""),
    ],
)  # fmt: skip
def test_errors_name_file_key_and_value(
    tmp_path: Path, text: str, key: str, value: object, words: str
) -> None:
    path = tmp_path / "scores.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as caught:
        load_rules(path)
    [error] = caught.value.errors
    assert error.path == str(path)
    assert error.key == key
    if value is not None:
        assert error.value == value
    assert words in str(error)


def test_feed_folder_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "scores.yaml").write_text("feed: {folder: out}\n", encoding="utf-8")
    assert rules_for(tmp_path).feed.folder == tmp_path / "out"


def test_a_rating_follows_the_thresholds() -> None:
    rules = ScoreRules()
    assert rules.rating(Decimal(90), vetoed=False) == "satisfied"
    assert rules.rating(Decimal("89.99"), vetoed=False) == "basically_satisfied"
    assert rules.rating(Decimal("79.99"), vetoed=False) == "dissatisfied"
    assert rules.rating(Decimal(100), vetoed=True) == "dissatisfied"
