"""`create_app`: the server's FastAPI application, every dependency injectable.

    create_app(settings, engine=..., deployment=..., now=..., on_accepted=...) -> FastAPI

Production builds it from the settings alone (`esup-server run`); tests hand
in an engine on a temporary database, a configuration and a fixed clock. With
``ingest_processes`` set, the application starts its ingest workers when it
starts serving (`server.ingestworkers`); they read the settings' database and
config/, and the system clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casework.config import Deployment
from casework.configfiles import load_config
from server.api import health, ingest, projection
from server.api.cases import cases_router
from server.api.catalog import catalog_router
from server.api.figures import rates_router
from server.api.scores import scores_router
from server.ingest import Ingestor, OnAccepted
from server.ingestworkers import IngestWorkers
from server.liveconfig import Configuration, LiveConfig
from server.metrics import (
    RequestMetrics,
    StoreCollector,
    handler_of,
    metrics_registry,
    metrics_router,
)
from server.metrics.scores import YearScores
from server.scores.rules import ScoreRules, rules_for
from server.scores.service import ScoreService
from server.settings import ServerSettings
from server.store.database import make_engine
from server.store.tokens import TokenStore

__all__ = ["create_app"]

logger = logging.getLogger("server.access")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _version() -> str:
    try:
        return version("esup")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


class RequestLog:
    """One log line and one observation of `metrics` per HTTP request, taken when its
    response starts: a plain ASGI middleware (Starlette's ``BaseHTTPMiddleware``
    runs each request in a task of its own and passes the body through streams,
    which costs about a millisecond a request)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                seconds = time.perf_counter() - start
                status = message["status"]
                method = scope["method"]
                self.metrics.observe(method, handler_of(scope), status, seconds)
                client = scope.get("client")
                logger.info(
                    "request method=%s path=%s status=%d duration_ms=%.1f client=%s",
                    method,
                    URL(scope=scope).path,
                    status,
                    seconds * 1000,
                    client[0] if client else "-",
                )
            await send(message)

        await self.app(scope, receive, send_logged)


def _reloading(
    app: FastAPI, workers: IngestWorkers
) -> Callable[[Configuration, Configuration], None]:
    """The listener that starts new ingest workers for a configuration put in service. When
    they cannot start, ingest goes on in the server process, with the new configuration,
    rather than in workers that still check against the one before."""

    def reload(_old: Configuration, new: Configuration) -> None:
        try:
            workers.reload(new.fingerprint)
        except Exception:
            logging.getLogger(__name__).exception(
                "ingest: new workers did not start for the new configuration; ingest goes on "
                "in the server process (restart the server to use workers again)"
            )
            app.state.ingest = dataclasses.replace(app.state.ingest, workers=None)
            threading.Thread(target=workers.close, name="ingest-workers-close").start()

    return reload


def create_app(
    settings: ServerSettings,
    *,
    engine: Engine | None = None,
    deployment: Deployment | None = None,
    config: LiveConfig | None = None,
    now: Callable[[], datetime] = _utcnow,
    on_accepted: OnAccepted | None = None,
    score_rules: ScoreRules | None = None,
) -> FastAPI:
    """The application for `settings`.

    `engine` defaults to one on ``settings.database`` (disposed when the app
    shuts down; an engine handed in stays the caller's). `config` is the
    configuration in service, replaced when config/ changes; without it, one is
    made of `deployment`, by default the configuration in ``settings.config_dir``.
    `now` is the server's clock (aware datetimes). `on_accepted` receives, after
    each batch is committed, the (department, case_id) of every case with newly
    accepted events. `score_rules` default to the configuration directory's
    scores.yaml (or the reference city's rules).
    Raises `ConfigErrors` for an invalid configuration directory.
    """
    owned = engine is None
    db = make_engine(settings.database) if engine is None else engine
    if config is None:
        deployment = load_config(settings.config_dir) if deployment is None else deployment
        config = LiveConfig(Configuration.of(deployment))
    deployment = config().deployment

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers: IngestWorkers | None = None
        try:
            if settings.ingest_processes:
                # Started before serving: a worker that cannot start stops the server.
                workers = await asyncio.to_thread(
                    IngestWorkers,
                    settings,
                    config().fingerprint,
                    processes=settings.ingest_processes,
                    on_accepted=on_accepted,
                )
                app.state.ingest = dataclasses.replace(app.state.ingest, workers=workers)
                config.listen(_reloading(app, workers))
            yield
        finally:
            if workers is not None:
                app.state.ingest = dataclasses.replace(app.state.ingest, workers=None)
                await asyncio.to_thread(workers.close)
            if owned:
                db.dispose()

    app = FastAPI(
        title="esup server",
        version=_version(),
        description="Electronic supervision: case events in, case state and figures out.",
        lifespan=lifespan,
    )
    app.state.engine = db
    app.state.config = config
    ingestor = Ingestor(
        db,
        deployment,
        now=now,
        clock_skew=timedelta(seconds=settings.clock_skew_seconds),
        on_accepted=on_accepted,
    )
    # The ingest checks codes against the configuration in service.
    config.listen(lambda _old, new: setattr(ingestor, "deployment", new.deployment))
    app.state.ingest = ingest.IngestContext(
        tokens=TokenStore(db, now=now),
        ingestor=ingestor,
        max_body_bytes=settings.max_body_bytes,
    )
    app.include_router(ingest.router)
    app.include_router(health.router)
    app.include_router(projection.router)
    app.include_router(cases_router(db, config, now))
    app.include_router(catalog_router(config))
    app.include_router(rates_router(db, config))
    hours = (settings.working_hours.start, settings.working_hours.end)
    collector = StoreCollector(
        db, deployment, now=now, max_age=settings.metrics_cache_seconds, working_hours=hours
    )
    config.listen(lambda _old, new: collector.reconfigure(new.deployment, new.clock.calendar))
    app.state.metrics_collector = collector
    app.state.metrics_registry = registry = metrics_registry(_version())
    app.include_router(metrics_router(collector, registry))
    request_metrics = RequestMetrics(registry)
    rules = rules_for(settings.config_dir) if score_rules is None else score_rules
    app.include_router(scores_router(db, deployment, rules, now, listen=config.listen))
    # /metrics shows the running year's scores and ranks too, recomputed every minute.
    scoring = ScoreService(db, deployment, rules, now=now)
    config.listen(lambda _old, new: scoring.reconfigure(new.deployment))
    collector.scores = YearScores(
        lambda period: scoring.scores(period, evidence=False),
        lambda: now().astimezone(config().deployment.settings.zone).date(),
    )

    app.add_middleware(RequestLog, metrics=request_metrics)
    return app
