"""The deployment an agent clocks cases against: from the server, cached on disk.

The server publishes what an agent needs -- settings, departments, items with
their resolved limits, and the calendar -- as the ``esup.catalog/1`` document
at ``GET /api/v1/catalog`` (see server/api/catalog.py and docs/design.md).
`CatalogCache.load` fetches it (sending the cached ``ETag`` as
``If-None-Match``), turns it into a `casework.config.Deployment`, and writes
it to `CatalogSettings.cache_file` (temp file, fsync, rename: a crash leaves
the old cache or the new one, never half of one). When the server cannot be
reached, or answers an error, the cached copy is used, so an agent keeps its
clocks running through a server outage -- even across its own restarts.

A local configuration directory (`CatalogSettings.config_dir`, read with
`casework.configfiles.load_config`) replaces the server altogether.

Errors:

    CatalogError (EsupError, RuntimeError)
        no catalog at all: the server unreachable and no cache yet, or a
        document that is not a valid ``esup.catalog/1``
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from casework.config import (
    CalendarConfig,
    CalendarWindow,
    Department,
    Deployment,
    Item,
    Settings,
    SubItem,
    YearDays,
)
from casework.configfiles import load_config
from casework.errors import EsupError

__all__ = [
    "CATALOG_FORMAT",
    "CatalogCache",
    "CatalogError",
    "CatalogSettings",
    "deployment_from_document",
]

log = logging.getLogger(__name__)

CATALOG_FORMAT: Final = "esup.catalog/1"
CATALOG_PATH: Final = "/api/v1/catalog"
#: The cache file's own format: the server's document plus its ETag and fetch time.
CACHE_FORMAT: Final = "esup.catalog-cache/1"


class CatalogError(EsupError, RuntimeError):
    """No usable catalog: say where it was looked for and what to do."""


class CatalogSettings(BaseModel):
    """Where the agent's catalog and calendar come from: a server, or a local directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The server's base URL, e.g. ``https://esup.city.example``.
    server_url: str | None = None
    #: The agent's bearer token (sent if set).
    token: str | None = None
    #: A CA bundle to verify the server's certificate with (the system's by default).
    ca_file: Path | None = None
    #: A configuration directory used instead of the server.
    config_dir: Path | None = None
    #: Where the last document fetched is kept.
    cache_file: Path = Path("var/agent/catalog.json")
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    #: How often the runner asks the server again, in seconds.
    refresh_seconds: Annotated[float, Field(gt=0)] = 3600.0

    @model_validator(mode="after")
    def _one_origin(self) -> CatalogSettings:
        if self.server_url is None and self.config_dir is None:
            raise ValueError(
                "the catalog needs an origin: set server_url (the esup server) "
                "or config_dir (a local configuration directory)"
            )
        return self


def _fields(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `data` the model knows: a newer server may add others."""
    return {k: v for k, v in data.items() if k in model.model_fields}


def deployment_from_document(document: Any, origin: Path) -> Deployment:
    """A `Deployment` from an ``esup.catalog/1`` document; `origin` names where it came
    from in error messages and look-up errors. Raises `CatalogError`."""
    if not isinstance(document, Mapping) or document.get("format") != CATALOG_FORMAT:
        found = document.get("format") if isinstance(document, Mapping) else type(document)
        raise CatalogError(
            f"{origin} is not an {CATALOG_FORMAT} document (format {found!r}); "
            "check that the server URL points at an esup server."
        )
    try:
        calendar = document["calendar"]
        years = {
            int(year): YearDays.model_validate(_fields(YearDays, rule))
            for year, rule in calendar.get("years", {}).items()
        }
        return Deployment(
            directory=origin,
            settings=Settings.model_validate(_fields(Settings, document["settings"])),
            departments=tuple(
                Department.model_validate(_fields(Department, d)) for d in document["departments"]
            ),
            items=tuple(
                Item.model_validate(
                    {
                        **_fields(Item, item),
                        "sub_items": tuple(
                            SubItem.model_validate(_fields(SubItem, sub))
                            for sub in item.get("sub_items", ())
                        ),
                    }
                )
                for item in document["items"]
            ),
            calendar=CalendarConfig(
                years=years,
                holidays=calendar.get("holidays", ()),
                workdays=calendar.get("workdays", ()),
                window=CalendarWindow.model_validate(
                    _fields(CalendarWindow, calendar.get("window", {}))
                ),
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"{where}: {first['msg']} (value {first.get('input')!r})"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        raise CatalogError(f"The catalog from {origin} is not valid: {detail}.") from exc


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class CatalogCache:
    """Loads the deployment from the server, the cache, or a configuration directory.

    `client` is the HTTP client (tests pass one over an `httpx.MockTransport`);
    `now` the clock. After `load`, `origin` says where the deployment came from:
    ``server``, ``cache`` (server unreachable or unchanged since the cache)
    or ``config``.
    """

    def __init__(
        self,
        settings: CatalogSettings,
        *,
        client: httpx.Client | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._client = client
        self._now = now
        self.origin: Literal["server", "cache", "config", ""] = ""
        self.etag: str | None = None
        self.fetched_at: float | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            s = self.settings
            self._client = httpx.Client(
                timeout=s.timeout_seconds,
                verify=str(s.ca_file) if s.ca_file is not None else True,
            )
        return self._client

    def _read_cache(self) -> tuple[Deployment, str | None, float | None] | None:
        path = self.settings.cache_file
        try:
            cached = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("The catalog cache %s cannot be read (%s); ignoring it.", path, exc)
            return None
        if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT:
            log.warning("%s is not an %s file; ignoring it.", path, CACHE_FORMAT)
            return None
        deployment = deployment_from_document(cached.get("document"), path)
        return deployment, cached.get("etag"), cached.get("fetched_at")

    def load(self) -> Deployment:
        """The deployment to clock cases against, from the freshest origin there is."""
        s = self.settings
        if s.config_dir is not None:
            self.origin = "config"
            return load_config(s.config_dir)
        if s.server_url is None:  # the settings' validator makes this impossible
            raise CatalogError("The catalog settings name neither server_url nor config_dir.")
        try:
            cached = self._read_cache()
        except CatalogError as exc:
            log.warning("%s Fetching a fresh one.", exc)
            cached = None
        url = s.server_url.rstrip("/") + CATALOG_PATH
        headers = {"Accept": "application/json"}
        if s.token:
            headers["Authorization"] = f"Bearer {s.token}"
        if cached is not None and cached[1]:
            headers["If-None-Match"] = cached[1]
        try:
            response = self._http().get(url, headers=headers)
        except httpx.TransportError as exc:
            return self._fall_back(cached, f"cannot reach {url}: {exc}")
        if response.status_code == 304 and cached is not None:
            self.origin, self.etag, self.fetched_at = "cache", cached[1], cached[2]
            return cached[0]
        if response.status_code != 200:
            return self._fall_back(cached, f"{url} answered {response.status_code}")
        try:
            document = response.json()
        except ValueError as exc:
            return self._fall_back(cached, f"{url} answered with no JSON: {exc}")
        deployment = deployment_from_document(document, Path(url))
        etag = response.headers.get("etag")
        body = {
            "format": CACHE_FORMAT,
            "etag": etag,
            "fetched_at": self._now(),
            "url": url,
            "document": document,
        }
        write_atomically(s.cache_file, json.dumps(body, ensure_ascii=False).encode())
        self.origin, self.etag, self.fetched_at = "server", etag, body["fetched_at"]
        log.info("Catalog fetched from %s (ETag %s).", url, etag)
        return deployment

    def refresh(self) -> Deployment | None:
        """Ask the origin again; the deployment when it changed, None when it did not (or
        the server is away: the agent keeps the catalog it has). Never raises for an
        unreachable server; a document that is not a valid catalog is logged and ignored."""
        if self.settings.config_dir is not None:
            return None  # a local directory changes with a restart, like the agent's config
        before = self.etag
        try:
            deployment = self.load()
        except CatalogError as exc:
            log.error("%s Keeping the catalog in use.", exc)
            return None
        if self.origin != "server" or (self.etag == before and before is not None):
            return None
        return deployment

    def _fall_back(
        self, cached: tuple[Deployment, str | None, float | None] | None, why: str
    ) -> Deployment:
        if cached is None:
            raise CatalogError(
                f"No catalog: {why}, and there is no cached copy at "
                f"{self.settings.cache_file}. Start the agent once while the server is "
                "reachable, or set config_dir to a local configuration directory."
            )
        log.warning("Using the cached catalog %s: %s.", self.settings.cache_file, why)
        self.origin, self.etag, self.fetched_at = "cache", cached[1], cached[2]
        return cached[0]
