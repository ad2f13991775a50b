"""config/scores.yaml: the evaluation rules, as a frozen `ScoreRules`.

    load_rules(path) -> ScoreRules      a missing file gives the defaults
    ScoreRules()                        the reference city's rules

Every key is optional; the defaults are the reference city's published rules
(docs/scores.md lists each key, its default and where the default comes from).
Points are decimal numbers; weights are percentages of the evaluation's 100
points and must add up to 100 in every category. Problems are reported all
at once as `ConfigErrors`, each naming the file, the key and the value.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from casework.config import CATEGORIES, Category
from casework.configfiles import config_errors, read_yaml
from casework.errors import ConfigError, ConfigErrors

__all__ = [
    "PLATFORMS",
    "RATINGS",
    "ScoreRules",
    "load_rules",
]

#: The six platforms whose users rate a government department directly (六大平台).
PLATFORMS: Final = (
    "hotline_12345",  # 12345 政务服务热线
    "livelihood_hotline",  # 民生热线
    "petitions_bureau",  # 信访局
    "complaint_centre",  # 投诉中心
    "service_centre",  # 行政服务中心
    "media",  # 媒体
)
Platform = Literal[
    "hotline_12345",
    "livelihood_hotline",
    "petitions_bureau",
    "complaint_centre",
    "service_centre",
    "media",
]
Rating = Literal["satisfied", "basically_satisfied", "dissatisfied"]
#: Ratings from best to worst, with the words the evaluation office uses.
RATINGS: Final[dict[str, str]] = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
}
#: Where config/scores.yaml lives in a configuration directory.
RULES_FILE: Final = "scores.yaml"

Points = Annotated[Decimal, Field(ge=0, max_digits=9, decimal_places=2)]
Weight = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Weights(_Model):
    """A category's weights in percent: six platforms' users, superior, service users."""

    platforms: Weight = Decimal(0)
    superior: Weight = Decimal(0)
    service_users: Weight = Decimal(0)

    @model_validator(mode="after")
    def _hundred(self) -> Weights:
        total = self.platforms + self.superior + self.service_users
        if total != 100:
            raise ValueError(f"the weights add up to {total}, not 100")
        return self


def _default_weights() -> dict[Category, Weights]:
    citizen_facing = Weights(platforms=Decimal(80), superior=Decimal(10), service_users=Decimal(10))
    others = Weights(superior=Decimal(20), service_users=Decimal(80))
    return {"government": citizen_facing, "party_mass": others, "stationed": others}


class WarningRun(_Model):
    """Every `length` warnings of one department in one month cost `points` (3 consecutive: −3)."""

    length: Annotated[int, Field(ge=1)] = 3
    points: Points = Decimal(3)


class Caps(_Model):
    """The most the e-supervision deduction may take, for a month and for a year."""

    month: Points = Decimal(10)
    year: Points = Decimal(10)


class ESupervision(_Model):
    """Points per card, the warning-run rule and the cap (the 100-point monthly table)."""

    warning: Points = Decimal(0)
    yellow: Points = Decimal(5)
    red: Points = Decimal(10)
    warning_run: WarningRun = WarningRun()
    cap: Caps = Caps()


class Satisfaction(_Model):
    """Whether 基本满意 answers count as satisfied in a platform's satisfaction rate."""

    basically_satisfied_counts: bool = True


class Thresholds(_Model):
    """Final score at or above which a department is rated 满意, and 基本满意; below: 不满意."""

    satisfied: Points = Decimal(90)
    basically_satisfied: Points = Decimal(80)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.basically_satisfied > self.satisfied:
            raise ValueError("the 基本满意 threshold is above the 满意 threshold")
        return self


class Accountability(_Model):
    """Bottom `bottom` of a category rated `at_or_below` or worse → admonishment talk (诫勉);
    again the next year with growth under `growth_below_percent` → leadership adjustment."""

    bottom: Annotated[int, Field(ge=0)] = 3
    at_or_below: Rating = "basically_satisfied"
    growth_below_percent: Points = Decimal(5)


class LadderStep(_Model):
    """What `count` valid complaints against one member of staff within the window lead to."""

    count: Annotated[int, Field(ge=1)]
    action: Annotated[str, StringConstraints(min_length=1)]
    label: Annotated[str, StringConstraints(min_length=1)]


def _default_ladder() -> tuple[LadderStep, ...]:
    return (
        LadderStep(count=1, action="admonishment", label="诫勉谈话，不得评优"),
        LadderStep(count=2, action="incompetent_training", label="认定不称职，离岗培训"),
        LadderStep(count=3, action="incompetent_transfer", label="认定不称职，调整岗位，警告处分"),
        LadderStep(count=4, action="heavier_sanction", label="从重处分"),
        LadderStep(count=5, action="dismissal", label="辞退"),
    )


class StaffLadder(_Model):
    """The staff complaint ladder (首问/首办责任): complaints counted over `window_days`."""

    window_days: Annotated[int, Field(ge=1)] = 730
    steps: tuple[LadderStep, ...] = Field(default_factory=_default_ladder)

    @model_validator(mode="after")
    def _ascending(self) -> StaffLadder:
        counts = [s.count for s in self.steps]
        if counts != sorted(set(counts)):
            raise ValueError(f"the steps' counts must rise one after another, not {counts}")
        return self


class HeadApologies(_Model):
    """Department heads: `personal_from` valid complaints → personal apology; `public_from`, or a
    card of a level in `public_on_cards`, or an inspection finding → public apology."""

    personal_from: Annotated[int, Field(ge=1)] = 1
    public_from: Annotated[int, Field(ge=1)] = 2
    public_on_cards: tuple[Literal["warning", "yellow", "red"], ...] = ("red",)
    public_on_inspection: bool = True


def _check_cron(text: str) -> None:
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"the cron expression {text!r} is not valid: {exc}") from None


class Feed(_Model):
    """The scheduled feed: when (a crontab line), where (a folder, a URL), how hard to retry;
    and when closed periods are checked for late changes (`restate_cron`)."""

    cron: Annotated[str, StringConstraints(min_length=9)] = "0 2 1 * *"
    restate_cron: Annotated[str, StringConstraints(min_length=9)] = "15 * * * *"
    folder: Path | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    retry_seconds: Annotated[float, Field(ge=0)] = 30.0

    @model_validator(mode="after")
    def _cron(self) -> Feed:
        _check_cron(self.cron)
        _check_cron(self.restate_cron)
        return self


class ScoreRules(_Model):
    """The evaluation rules; the defaults are the reference city's."""

    weights: dict[Category, Weights] = Field(default_factory=_default_weights)
    platforms: tuple[Platform, ...] = PLATFORMS
    satisfaction: Satisfaction = Satisfaction()
    esupervision: ESupervision = ESupervision()
    thresholds: Thresholds = Thresholds()
    accountability: Accountability = Accountability()
    staff_ladder: StaffLadder = StaffLadder()
    heads: HeadApologies = HeadApologies()
    feed: Feed = Feed()

    @model_validator(mode="after")
    def _every_category(self) -> ScoreRules:
        missing = [c for c in CATEGORIES if c not in self.weights]
        if missing:
            raise ValueError(f"weights are missing for the categories {missing}")
        return self

    def rating(self, final: Decimal, vetoed: bool) -> Rating:
        """The rating of a final score; a veto forces the lowest."""
        if vetoed:
            return "dissatisfied"
        if final >= self.thresholds.satisfied:
            return "satisfied"
        if final >= self.thresholds.basically_satisfied:
            return "basically_satisfied"
        return "dissatisfied"


def load_rules(path: Path) -> ScoreRules:
    """The rules in `path` (config/scores.yaml); a missing file means every default.

    Raises `ConfigErrors` naming the file, key and value of every problem.
    """
    path = Path(path)
    if not path.exists():
        return ScoreRules()
    errors: list[ConfigError] = []
    data = read_yaml(path, errors)
    if data is None:
        raise ConfigErrors(errors)
    try:
        rules = ScoreRules.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(config_errors(str(path), ScoreRules, data, exc)) from None
    if rules.feed.folder is not None and not rules.feed.folder.is_absolute():
        feed = rules.feed.model_copy(update={"folder": path.parent / rules.feed.folder})
        rules = rules.model_copy(update={"feed": feed})
    return rules


def rules_for(config_dir: Path) -> ScoreRules:
    """The rules of a configuration directory (its scores.yaml, or the defaults)."""
    return load_rules(Path(config_dir) / RULES_FILE)
