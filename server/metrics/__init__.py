"""The server's Prometheus metrics, on a registry of esup's own.

    metrics_registry(collector) -> CollectorRegistry   store figures, process, build info
    StoreCollector          store-backed families, cached a few seconds (store.py)
    RequestMetrics          the HTTP request-duration histogram (http.py)
    metrics_router(registry) -> APIRouter               GET /metrics

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


def metrics_registry(collector: StoreCollector | None, version: str) -> CollectorRegistry:
    """A new registry holding `collector` (if any), the process collector and build info."""
    registry = CollectorRegistry(auto_describe=False)
    if collector is not None:
        registry.register(collector)
    ProcessCollector(registry=registry)
    Info("esup_build", "The running esup server.", registry=registry).info({"version": version})
    return registry


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """``GET /metrics``: the Prometheus text exposition of `registry`."""
    router = APIRouter()

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
