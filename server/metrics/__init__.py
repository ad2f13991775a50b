"""The server's Prometheus metrics, on a registry of esup's own.

    metrics_registry(version) -> CollectorRegistry       this process: process, build info
    StoreCollector          store-backed families, cached a few seconds (store.py)
    RequestMetrics          the HTTP request-duration histogram (http.py)
    metrics_router(collector, registry) -> APIRouter     GET /metrics

docs/metrics.md lists every series, its labels and their cardinality.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Info,
    ProcessCollector,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from server.metrics.http import RequestMetrics, handler_of
from server.metrics.store import StoreCollector, reason_class

__all__ = [
    "RequestMetrics",
    "StoreCollector",
    "handler_of",
    "metrics_registry",
    "metrics_router",
    "reason_class",
]


def metrics_registry(version: str) -> CollectorRegistry:
    """A new registry for this process's own series: the process collector and build info.

    The store's series come from a `StoreCollector`, served beside it by `metrics_router`.
    """
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    Info("esup_build", "The running esup server.", registry=registry).info({"version": version})
    return registry


def metrics_router(collector: StoreCollector, registry: CollectorRegistry) -> APIRouter:
    """``GET /metrics``: the store's series (`collector`), then those of `registry`.

    The store's part is text rendered when its snapshot was read, so a scrape
    costs little more than copying it.
    """
    router = APIRouter()

    def render() -> bytes:
        return collector.exposition() + generate_latest(registry)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        body = await run_in_threadpool(render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
