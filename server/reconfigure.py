"""Recomputing case state when what the clock depends on changes.

    clock_inputs(deployment) -> dict         everything the clock reads from the configuration
    clock_fingerprint(deployment) -> str     SHA-256 (hex) of those inputs as canonical JSON
    startup_lock(engine) -> RunLock          PostgreSQL: one server recomputes; SQLite: always
    recompute_on_start(...) -> Recomputed | None
    recompute_cases(...) -> Recomputed       the operator's explicit recompute
    put_in_service(projector, old, new)      a reloaded configuration reaches the cases

The fingerprint covers the effective limits (promised, legal, warn days) of every
item and sub-item code, the time zone, the procedure warning, and the working-day
calendar the clock is built from: the `chinese-calendar` package's years replaced
and extended by calendar.yaml, the single-date overrides and the window. It is taken
over values, not file bytes: comments, the order of items or dates, names and
departments do not change it; a changed limit, holiday or make-up day does.

On start, `esup-server run` compares it with the fingerprint stored in
`server_state`. When they differ (or none is stored and cases exist), every open
case (and every invalid one) is recomputed in batches, progress logged, and then
the new fingerprint is stored; closed cases keep their results. Stored last, so a
server stopped mid-way recomputes again on its next start (recomputing is
idempotent). Several servers sharing PostgreSQL: the one that takes the session
advisory lock `RECOMPUTE_LOCK_KEY` recomputes; the others log why and skip.

`esup-server recompute` is the explicit command: open cases, or with `--closed`
every case, each changed closed case logged before and after by the projector.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Protocol

from sqlalchemy import Engine, func, select

from casework.calendar import YearRule, package_years
from casework.clock import Clock
from casework.config import Deployment
from server.cases import CaseProjector, Recomputed
from server.dailycounts import ensure_daily_counts
from server.jobs import RunLock
from server.store import tables
from server.store.state import StateStore

__all__ = [
    "FINGERPRINT_KEY",
    "FINGERPRINT_VERSION",
    "RECOMPUTE_LOCK_KEY",
    "clock_fingerprint",
    "clock_inputs",
    "put_in_service",
    "recompute_cases",
    "recompute_on_start",
    "startup_lock",
]

logger = logging.getLogger(__name__)

#: The `server_state` key of the fingerprint the stored cases were computed with.
FINGERPRINT_KEY: Final = "clock_fingerprint"

#: Bumped when `clock_inputs` changes shape, so that every database recomputes once.
FINGERPRINT_VERSION: Final = 1

#: The PostgreSQL advisory lock key of the start-up recompute: "esuprcp1" read as a
#: big-endian signed 64-bit integer; distinct from the advancing job's. Fixed forever.
RECOMPUTE_LOCK_KEY: Final = int.from_bytes(b"esuprcp1", "big", signed=True)

#: Log progress every this many batches.
PROGRESS_EVERY: Final = 10


def _days(days: Any) -> list[str]:
    return sorted({day.isoformat() for day in days})


def clock_inputs(
    deployment: Deployment, *, package: Mapping[int, YearRule] | None = None
) -> dict[str, Any]:
    """What the clock reads from `deployment`, as plain JSON values in a canonical shape.

    `package` is the calendar package's years (default: `package_years()`), which
    calendar.yaml replaces year by year, as `WorkCalendar.from_config` does.
    """
    codes = [item.code for item in deployment.items]
    codes += [sub.code for item in deployment.items for sub in item.sub_items]
    limits = {}
    for code in codes:
        found = deployment.limits(code)
        limits[code] = [found.promised_days, found.legal_days, found.warn_days]
    calendar = deployment.calendar
    years: dict[int, YearRule] = dict(package_years() if package is None else package)
    years.update(
        (year, YearRule(frozenset(rule.holidays), frozenset(rule.workdays)))
        for year, rule in calendar.years.items()
    )
    return {
        "version": FINGERPRINT_VERSION,
        "timezone": deployment.settings.timezone,
        "procedure_warn_days": deployment.settings.procedure_warn_days,
        "limits": limits,
        "calendar": {
            "years": {
                str(year): {"holidays": _days(rule.holidays), "workdays": _days(rule.workdays)}
                for year, rule in years.items()
            },
            "holidays": _days(calendar.holidays),
            "workdays": _days(calendar.workdays),
            "window": [calendar.window.first_year, calendar.window.last_year],
        },
    }


def clock_fingerprint(
    deployment: Deployment, *, package: Mapping[int, YearRule] | None = None
) -> str:
    """SHA-256 (64 hex digits) of `clock_inputs` as JSON with sorted keys and no spaces."""
    text = json.dumps(
        clock_inputs(deployment, package=package), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def startup_lock(engine: Engine, key: int = RECOMPUTE_LOCK_KEY) -> RunLock:
    """The lock of the start-up recompute: ``pg_try_advisory_lock(key)`` on PostgreSQL,
    held on a connection of its own until the context exits, then unlocked; on SQLite
    (one server process) always granted. The context yields whether it was granted."""

    @contextmanager
    def lock() -> Iterator[bool]:
        if engine.dialect.name != "postgresql":
            yield True
            return
        with engine.connect() as connection:
            got: bool = connection.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
            try:
                yield got
            finally:
                if got:
                    connection.execute(select(func.pg_advisory_unlock(key)))

    return lock


def _open_count(engine: Engine) -> int:
    c = tables.cases.c
    with engine.connect() as connection:
        count: int = connection.execute(
            select(func.count()).select_from(tables.cases).where(c.state != "closed")
        ).scalar_one()
        return count


def _any_case(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(tables.cases.c.case_id).limit(1)).first() is not None


def _progress_logger(total: int | None, every: int) -> Callable[[Recomputed], None]:
    of = "" if total is None else f"/{total}"

    def progress(done: Recomputed) -> None:
        if done.batches % every == 0:
            logger.info(
                "recompute: %d%s cases after %d batches, %d changed",
                done.looked_at,
                of,
                done.batches,
                done.changed,
            )

    return progress


def recompute_cases(
    projector: CaseProjector,
    fingerprint: str,
    *,
    closed: bool = False,
    progress_every: int = PROGRESS_EVERY,
) -> Recomputed:
    """Recompute the open (and invalid) cases, with `closed` every case, in the projector's
    batches, logging progress every `progress_every` batches; then store `fingerprint`
    as the one the cases are computed with. Each changed closed case is logged before
    and after (by the projector). Returns the totals."""
    engine = projector.engine
    total = None if closed else _open_count(engine)
    report = _progress_logger(total, progress_every)
    result = Recomputed()

    def progress(done: Recomputed) -> None:
        nonlocal result
        result = done
        report(done)

    projector.recompute(open_only=not closed, progress=progress)
    StateStore(engine).put(FINGERPRINT_KEY, fingerprint)
    logger.info(
        "recompute done: %d cases looked at, %d changed, %d of them closed; fingerprint %s",
        result.looked_at,
        result.changed,
        result.closed_changed,
        fingerprint[:12],
    )
    return result


def recompute_on_start(
    projector: CaseProjector,
    fingerprint: str,
    *,
    lock: RunLock | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> Recomputed | None:
    """Recompute the open cases if `fingerprint` (the current configuration's) is not the
    one stored, or none is stored and cases exist; then store it. Closed cases are left
    alone. `lock` (default `startup_lock`) lets one server of several do it.

    Returns the totals, or None when nothing was recomputed (the fingerprint is
    unchanged, there are no cases, or another server holds the lock).
    """
    engine = projector.engine
    state = StateStore(engine)
    with (lock or startup_lock(engine))() as got:
        if not got:
            logger.info(
                "recompute on start skipped: another server holds the recompute lock and is "
                "bringing the cases up to date with the configuration"
            )
            return None
        stored = state.get(FINGERPRINT_KEY)  # read under the lock: another may have just done it
        if stored == fingerprint:
            logger.info(
                "configuration unchanged (fingerprint %s): nothing to recompute", stored[:12]
            )
            return None
        if stored is None and not _any_case(engine):
            state.put(FINGERPRINT_KEY, fingerprint)
            logger.info("no cases yet; configuration fingerprint %s stored", fingerprint[:12])
            return None
        was = "none stored" if stored is None else f"was {stored[:12]}"
        logger.info(
            "configuration fingerprint %s (%s): recomputing open cases", fingerprint[:12], was
        )
        return recompute_cases(projector, fingerprint, progress_every=progress_every)


class _Served(Protocol):
    """What `put_in_service` reads of a configuration (a `server.liveconfig.Configuration`)."""

    @property
    def deployment(self) -> Deployment: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def fingerprint(self) -> str: ...


def put_in_service(projector: CaseProjector, old: _Served, new: _Served) -> None:
    """A reloaded configuration reaches the cases: the projector derives with the new
    clock and catalog from now on; when what the clock reads changed, the open cases
    are recomputed (as on a start, `recompute_on_start`); when the zone changed, the
    figures' daily counts are rebuilt."""
    projector.reconfigure(new.clock, new.deployment, new.fingerprint)
    if new.fingerprint != old.fingerprint:
        recompute_on_start(projector, new.fingerprint)
    zone = new.deployment.settings.zone
    if str(zone) != str(old.deployment.settings.zone):
        ensure_daily_counts(projector.engine, zone)
