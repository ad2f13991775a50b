"""`RequestMetrics`: the HTTP request-duration histogram, per server process.

    RequestMetrics(registry).observe(method, handler, code, seconds)
    handler_of(scope) -> the route template that answered ("unmatched" when none)

The `handler` label is the route's template (``/api/v1/cases/{department}/{case_id}``),
never the path, so case ids stay out of the labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["BUCKETS", "RequestMetrics", "handler_of"]

#: Upper bounds in seconds: ingest batches take tens of ms, listings up to a second.
BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def handler_of(scope: Mapping[str, Any]) -> str:
    """The template of the route that handled the request, or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMetrics:
    """``esup_http_request_duration_seconds{method,handler,code}`` on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "esup_http_request_duration_seconds",
            "Time to answer an HTTP request, in this server process.",
            ["method", "handler", "code"],
            buckets=BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, handler: str, code: int, seconds: float) -> None:
        self.histogram.labels(method, handler, str(code)).observe(seconds)
