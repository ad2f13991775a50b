"""The catalog from the server, cached on disk for when the server is away, or from a
local configuration directory; the server's own document round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from clockfakes import deployment

from agent.catalogcache import (
    CatalogCache,
    CatalogError,
    CatalogSettings,
    deployment_from_document,
)
from casework.calendar import WorkCalendar
from casework.config import CalendarConfig, YearDays
from server.api.catalog import catalog_document

ROOT = Path(__file__).resolve().parents[2]
SERVER = "http://esup.test"


def document() -> dict[str, object]:
    config = deployment().model_copy(
        update={
            "calendar": CalendarConfig(
                years={
                    2027: YearDays(
                        source="notice", holidays=("2027-01-01",), workdays=("2027-02-14",)
                    )
                },
                holidays=("2026-07-15",),
            )
        }
    )
    return catalog_document(config, WorkCalendar.from_config(config.calendar))


class Server:
    """A catalog endpoint: 200 with an ETag, 304 when it matches, or down."""

    def __init__(self) -> None:
        self.body = json.dumps(document()).encode()
        self.etag = '"v1"'
        self.status: int | None = 200  # None: unreachable
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status is None:
            raise httpx.ConnectError("connection refused", request=request)
        if self.status != 200:
            return httpx.Response(self.status)
        if request.headers.get("if-none-match") == self.etag:
            return httpx.Response(304, headers={"ETag": self.etag})
        return httpx.Response(200, content=self.body, headers={"ETag": self.etag})


def cache(tmp_path: Path, server: Server, **settings: object) -> CatalogCache:
    config = CatalogSettings.model_validate(
        {"server_url": SERVER, "cache_file": tmp_path / "cache" / "catalog.json", **settings}
    )
    return CatalogCache(config, client=httpx.Client(transport=httpx.MockTransport(server)))


def test_the_servers_document_becomes_the_same_deployment() -> None:
    original = deployment()
    rebuilt = deployment_from_document(document(), Path(SERVER))
    assert rebuilt.settings == original.settings
    assert rebuilt.departments == original.departments
    for code in ("fgw-001", "fgw-001-01", "jyj-001"):
        assert rebuilt.limits(code) == original.limits(code)
    assert rebuilt.calendar.years[2027].workdays[0].isoformat() == "2027-02-14"
    assert rebuilt.calendar.holidays[0].isoformat() == "2026-07-15"


def test_the_shipped_configuration_round_trips() -> None:
    from casework.configfiles import load_config

    config = load_config(ROOT / "config")
    doc = json.loads(
        json.dumps(catalog_document(config, WorkCalendar.from_config(config.calendar)))
    )
    rebuilt = deployment_from_document(doc, Path(SERVER))
    assert len(rebuilt.items) == len(config.items)
    assert all(rebuilt.limits(i.code) == config.limits(i.code) for i in config.items)


def test_fetched_then_cached_then_used_while_the_server_is_down(tmp_path: Path) -> None:
    server = Server()
    first = cache(tmp_path, server, token="s3cret")
    assert first.load().settings.city == "Testing"
    assert first.origin == "server"
    assert server.requests[0].headers["authorization"] == "Bearer s3cret"
    assert json.loads((tmp_path / "cache" / "catalog.json").read_text())["etag"] == '"v1"'
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["catalog.json"]  # no temp left

    again = cache(tmp_path, server)  # a restart: the cache's ETag is sent, 304 comes back
    assert again.load().limits("fgw-001").promised_days == 5
    assert (again.origin, server.requests[-1].headers["if-none-match"]) == ("cache", '"v1"')

    server.status = None
    down = cache(tmp_path, server)
    assert down.load().limits("jyj-001").legal_days == 20
    assert down.origin == "cache"
    server.status = 503
    assert cache(tmp_path, server).load().settings.city == "Testing"


def test_no_server_and_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    server = Server()
    server.status = None
    with pytest.raises(CatalogError, match="no cached copy"):
        cache(tmp_path, server).load()


def test_a_new_catalog_replaces_the_cache(tmp_path: Path) -> None:
    server = Server()
    cache(tmp_path, server).load()
    changed = document()
    changed["settings"]["city"] = "Renamed"  # type: ignore[index]
    server.body, server.etag = json.dumps(changed).encode(), '"v2"'
    assert cache(tmp_path, server).load().settings.city == "Renamed"
    server.status = None
    assert cache(tmp_path, server).load().settings.city == "Renamed"


def test_a_document_that_is_not_a_catalog_is_refused_and_the_cache_kept(tmp_path: Path) -> None:
    server = Server()
    cache(tmp_path, server).load()
    broken = document()
    broken["items"][0]["legal_days"] = -1  # type: ignore[index]
    server.body, server.etag = json.dumps(broken).encode(), '"v3"'
    with pytest.raises(CatalogError, match="legal_days"):
        cache(tmp_path, server).load()
    server.body = b'{"format": "something/else"}'
    with pytest.raises(CatalogError, match=r"not an esup\.catalog/1"):
        cache(tmp_path, server).load()
    server.status = None
    assert cache(tmp_path, server).load().settings.city == "Testing"


def test_a_local_configuration_directory_needs_no_server(tmp_path: Path) -> None:
    local = CatalogCache(CatalogSettings(config_dir=ROOT / "config", cache_file=tmp_path / "c"))
    assert local.load().department("fgw").supervised
    assert local.origin == "config"


def test_settings_need_an_origin() -> None:
    with pytest.raises(ValueError, match="server_url"):
        CatalogSettings()


def test_refresh_returns_a_deployment_only_when_the_catalog_changed(tmp_path: Path) -> None:
    server = Server()
    catalog = cache(tmp_path, server)
    catalog.load()
    assert catalog.refresh() is None  # 304: unchanged
    server.status = None
    assert catalog.refresh() is None  # away: keep what we have
    server.status = 200
    changed = document()
    changed["settings"]["warn_days"] = 3  # type: ignore[index]
    server.body, server.etag = json.dumps(changed).encode(), '"v2"'
    fresh = catalog.refresh()
    assert fresh is not None
    assert fresh.settings.warn_days == 3
    server.body, server.etag = b'{"format": "x"}', '"v3"'
    assert catalog.refresh() is None  # not a catalog: logged, ignored
