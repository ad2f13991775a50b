"""The scores' series: each department's running score, rank and rating for the year.

    score_families(scores) -> list[Metric]
    YearScores(compute, max_age=60, now=...)   the current year's scores, recomputed
                                               at most every `max_age` seconds

Scoring every department reads the year's cards and the evaluation office's
inputs (0.3-0.9 s for a million-case year, docs/benchmarks.md "Scores"), and a
score moves when cards are issued or inputs imported, not every few seconds;
so the store collector asks `YearScores`, which hands back the last result
until it is `max_age` old. Labels: department, category, and for the rating
its value from the fixed set of DESIGN.md (满意 / 基本满意 / 不满意).
"""

from __future__ import annotations

import threading
import time as timer
from collections.abc import Callable
from datetime import date

from prometheus_client.core import GaugeMetricFamily, Metric

from server.scores.period import Period
from server.scores.results import Scores

__all__ = ["YearScores", "score_families"]


def score_families(scores: Scores) -> list[Metric]:
    """Score, rank, rating and veto of every department in `scores` (one period)."""
    final = GaugeMetricFamily(
        "esup_score_points",
        "The department's score for the running year so far (the sum of its parts).",
        labels=["department", "category"],
    )
    rank = GaugeMetricFamily(
        "esup_score_rank",
        "The department's rank within its category for the running year (1 is first).",
        labels=["department", "category"],
    )
    rating = GaugeMetricFamily(
        "esup_score_rating",
        "1 for the department's rating for the running year, 0 for the others.",
        labels=["department", "rating"],
    )
    vetoed = GaugeMetricFamily(
        "esup_score_vetoed",
        "1 when a one-vote veto finding forces the department's lowest rating.",
        labels=["department"],
    )
    ratings = sorted({d.rating for d in scores.departments} | {"满意", "基本满意", "不满意"})
    for d in scores.departments:
        final.add_metric([d.code, d.category], float(d.final))
        rank.add_metric([d.code, d.category], d.rank)
        for name in ratings:
            rating.add_metric([d.code, name], 1 if d.rating == name else 0)
        vetoed.add_metric([d.code], 1 if d.vetoed else 0)
    return [final, rank, rating, vetoed]


class YearScores:
    """The scores of the year `today()` falls in, from `compute` (a `ScoreService`'s
    `scores` without evidence), kept for `max_age` seconds."""

    def __init__(
        self,
        compute: Callable[[Period], Scores],
        today: Callable[[], date],
        *,
        max_age: float = 60.0,
        monotonic: Callable[[], float] = timer.monotonic,
    ) -> None:
        self.compute = compute
        self.today = today
        self.max_age = max_age
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._kept: tuple[float, str, Scores] | None = None

    def __call__(self) -> Scores:
        period = Period.parse(str(self.today().year))
        with self._lock:
            kept = self._kept
            fresh = kept is not None and kept[1] == str(period)
            if fresh and kept is not None and self.monotonic() - kept[0] < self.max_age:
                return kept[2]
            scores = self.compute(period)
            self._kept = (self.monotonic(), str(period), scores)
            return scores
