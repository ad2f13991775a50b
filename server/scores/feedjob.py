"""The scheduled scoring feed: write it into a folder and/or POST it to a URL, with retries.

    FeedJob(service, feed, transport=..., sleep=..., now=...)
        deliver(period) -> [str]     write and post one period's feed; what was done
        run()                        the scheduled run: restate closed periods whose results
                                     late events changed, then deliver last month and its year
        restate()                    the scheduled check: restate closed periods that changed
    start_feed_scheduler(job, zone) -> BackgroundScheduler   APScheduler 3.x, both crontabs

Files are ``scores-PERIOD.json``, ``.csv`` and ``.xlsx``, each written to a
temporary file in the folder and renamed over the old one, so a reader never
sees half a file. The POST sends the JSON (``Content-Type: application/json``);
a connection failure, a timeout, 429 or a 5xx is retried up to `retries` times,
`retry_seconds` apart, each retry logged; another 4xx is permanent and logged
at once. A failing run is logged with its traceback and never stops the
scheduler.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import httpx
from apscheduler.schedulers.background import (  # type: ignore[import-untyped]
    BackgroundScheduler,
)
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from server.scores import feed as formats
from server.scores.period import Period
from server.scores.rules import Feed
from server.scores.service import ScoreService

__all__ = ["FeedDeliveryError", "FeedJob", "start_feed_scheduler", "write_atomically"]

logger = logging.getLogger(__name__)

TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FeedDeliveryError(RuntimeError):
    """The feed could not be posted (a permanent refusal, or every retry failed)."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class FeedJob:
    """Delivers the feed as `feed` (scores.yaml's feed section) says."""

    def __init__(
        self,
        service: ScoreService,
        feed: Feed,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.service = service
        self.feed = feed
        self.transport = transport
        self.sleep = sleep
        self.now = now
        self.failures = 0

    def _post(self, period: Period, body: bytes) -> str:
        url = self.feed.url
        assert url is not None
        attempts = self.feed.retries + 1
        with httpx.Client(transport=self.transport, timeout=30.0) as client:
            for attempt in range(1, attempts + 1):
                try:
                    answer = client.post(
                        url,
                        content=body,
                        headers={"Content-Type": "application/json", "X-Esup-Period": str(period)},
                    )
                except httpx.TransportError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if answer.status_code < 300:
                        return f"posted {period} to {url}: {answer.status_code}"
                    problem = f"HTTP {answer.status_code}"
                    if answer.status_code not in TRANSIENT_STATUS:
                        raise FeedDeliveryError(
                            f"{url} refused the feed of {period} ({problem}); not retried."
                        )
                if attempt < attempts:
                    logger.warning(
                        "feed %s to %s failed (%s); retry %d of %d in %.0f s",
                        period, url, problem, attempt, self.feed.retries, self.feed.retry_seconds,
                    )  # fmt: skip
                    self.sleep(self.feed.retry_seconds)
        raise FeedDeliveryError(
            f"Posting the feed of {period} to {url} failed {attempts} times; last: {problem}."
        )

    def deliver(self, period: Period) -> list[str]:
        """Write and post `period`'s feed; returns what was done, line by line."""
        scores = self.service.scores(period)
        body = json.dumps(scores.to_json(), ensure_ascii=False).encode("utf-8")
        done: list[str] = []
        if self.feed.folder is not None:
            for suffix, data in (
                ("json", body),
                ("csv", formats.to_csv(scores).encode("utf-8")),
                ("xlsx", formats.to_xlsx(scores)),
            ):
                path = self.feed.folder / f"scores-{period}.{suffix}"
                write_atomically(path, data)
                done.append(f"wrote {path}")
        if self.feed.url is not None:
            done.append(self._post(period, body))
        if not done:
            done.append(f"feed of {period}: no folder or url in scores.yaml; nothing delivered")
        return done

    def periods_due(self) -> tuple[Period, Period]:
        """The month before the current local month, and the year of that month."""
        local = self.now().astimezone(self.service.deployment.settings.zone)
        year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
        return Period(year, month), Period(year)

    def restate(self) -> None:
        """The scheduled check of closed periods for late changes; never raises."""
        try:
            for done in self.service.restate_closed("late changes found by the scheduled check"):
                logger.info("restated %s: %d change(s)", done["period"], len(done["changes"]))
        except Exception:
            self.failures += 1
            logger.exception("checking the closed periods failed; the next run will try again")

    def run(self) -> None:
        """The scheduled feed run; never raises (failures are logged and counted)."""
        try:
            self.service.restate_closed("late changes found by the scheduled feed run")
            for period in self.periods_due():
                for line in self.deliver(period):
                    logger.info("feed: %s", line)
        except Exception:
            self.failures += 1
            logger.exception("the scheduled scoring feed failed; the next run will try again")


def start_feed_scheduler(job: FeedJob, zone: ZoneInfo) -> BackgroundScheduler:
    """A started background scheduler: `job.restate` at the feed's `restate_cron`, and
    `job.run` at its `cron` when the feed has a folder or a URL to deliver to."""
    scheduler = BackgroundScheduler(timezone=zone)
    scheduler.add_job(
        job.restate,
        CronTrigger.from_crontab(job.feed.restate_cron, timezone=zone),
        id="esup-scores-restate",
        max_instances=1,
        coalesce=True,
    )
    if job.feed.folder is not None or job.feed.url is not None:
        scheduler.add_job(
            job.run,
            CronTrigger.from_crontab(job.feed.cron, timezone=zone),
            id="esup-scores-feed",
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return scheduler
