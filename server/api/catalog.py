"""``GET /api/v1/catalog``: what an agent needs to run its case clocks offline.

    catalog_router(config) -> APIRouter
    catalog_document(deployment, calendar) -> dict     (format ``esup.catalog/1``)

The document::

    {"format": "esup.catalog/1",
     "settings":    {"city", "timezone", "warn_days", "procedure_warn_days"},
     "departments": [{"code", "name", "category", "supervised"}],
     "items":       [{"code", "name", "department", "kind",
                      "promised_days", "legal_days", "warn_days",
                      "sub_items": [{"code", "name", "promised_days", "legal_days", "warn_days"}]}],
     "calendar":    {"years": {"2027": {"source", "holidays", "workdays"}},
                     "holidays": [...], "workdays": [...],
                     "window": {"first_year", "last_year"},
                     "last_covered_year": 2026}}

Limits are working days and resolved as the server's clock uses them: a
sub-item's unset limits are its item's, an unset `warn_days` the deployment's.
`years`, `holidays` and `workdays` are the configuration's own additions and
overrides (dates local ``YYYY-MM-DD``); the years before them come from the
`chinese-calendar` package, and `last_covered_year` is the last year whose
holidays the server knows from either.

The body is built once, when the router is; its ``ETag`` is the SHA-256 of the
body, so an agent that sends ``If-None-Match`` gets 304 until the
configuration changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Response

from casework.calendar import WorkCalendar
from casework.config import Deployment
from server.liveconfig import Configuration

__all__ = ["FORMAT", "catalog_document", "catalog_router", "etag_matches"]

FORMAT: Final = "esup.catalog/1"


def _limits(deployment: Deployment, code: str) -> dict[str, int]:
    limits = deployment.limits(code)
    return {
        "promised_days": limits.promised_days,
        "legal_days": limits.legal_days,
        "warn_days": limits.warn_days,
    }


def catalog_document(deployment: Deployment, calendar: WorkCalendar) -> dict[str, Any]:
    """The ``esup.catalog/1`` document of `deployment`; `calendar` is the one built from it."""
    settings = deployment.settings
    config = deployment.calendar
    return {
        "format": FORMAT,
        "settings": {
            "city": settings.city,
            "timezone": settings.timezone,
            "warn_days": settings.warn_days,
            "procedure_warn_days": settings.procedure_warn_days,
        },
        "departments": [
            {"code": d.code, "name": d.name, "category": d.category, "supervised": d.supervised}
            for d in deployment.departments
        ],
        "items": [
            {
                "code": item.code,
                "name": item.name,
                "department": item.department,
                "kind": item.kind,
                **_limits(deployment, item.code),
                "sub_items": [
                    {"code": sub.code, "name": sub.name, **_limits(deployment, sub.code)}
                    for sub in item.sub_items
                ],
            }
            for item in deployment.items
        ],
        "calendar": {
            "years": {
                str(year): {
                    "source": rule.source,
                    "holidays": [d.isoformat() for d in rule.holidays],
                    "workdays": [d.isoformat() for d in rule.workdays],
                }
                for year, rule in config.years.items()
            },
            "holidays": [d.isoformat() for d in config.holidays],
            "workdays": [d.isoformat() for d in config.workdays],
            "window": {
                "first_year": config.window.first_year,
                "last_year": config.window.last_year,
            },
            "last_covered_year": calendar.last_covered_year,
        },
    }


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names `etag` (weak comparison, ``*`` matches all)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def catalog_router(config: Callable[[], Configuration]) -> APIRouter:
    """The catalog route for the configuration in service (`config()`); its document and
    ETag are built once per configuration."""
    built: list[tuple[Configuration, bytes, str]] = []

    def document() -> tuple[bytes, str]:
        current = config()
        if not built or built[0][0] is not current:
            body = json.dumps(
                catalog_document(current.deployment, current.clock.calendar),
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            built[:] = [(current, body, f'"{hashlib.sha256(body).hexdigest()}"')]
        _, body, etag = built[0]
        return body, etag

    router = APIRouter()

    @router.get(
        "/api/v1/catalog",
        summary="Settings, departments, items with resolved limits, and the calendar",
        responses={
            200: {"description": f"the {FORMAT} document", "content": {"application/json": {}}},
            304: {"description": "the catalog is unchanged since the ETag sent"},
        },
    )
    def get_catalog(
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The catalog document; 304 without a body when ``If-None-Match`` names its ETag."""
        body, etag = document()
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    return router
