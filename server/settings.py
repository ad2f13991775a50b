"""The server's settings: one YAML file, read into a frozen `ServerSettings`.

    load_settings(path) -> ServerSettings

Every key is optional; config/server.yaml is a documented example. A relative
`config_dir` is taken relative to the folder that holds the settings file; the
`database` URL is used as written (a relative SQLite path is relative to the
server's working directory, as for the other `esup-server` commands).
Problems are reported all at once as `ConfigErrors`, each naming the file, the
key and the offending value.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError

from casework.configfiles import config_errors, read_yaml
from casework.errors import ConfigError, ConfigErrors
from server.store.database import DEFAULT_URL

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "AlertSettings",
    "Listen",
    "ServerSettings",
    "WorkingHours",
    "load_settings",
]

#: The largest request body the ingest accepts by default, before and after gzip: 8 MiB.
DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listen(_Model):
    """Where the HTTP server listens: a host name or address and a TCP port."""

    host: Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)] = (
        "127.0.0.1"
    )
    port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 8470


class WorkingHours(_Model):
    """Office hours on a working day (by the calendar), local time: [start, end).

    Quote the times in YAML (``"09:00"``): unquoted, YAML 1.1 reads 09:00 as a number.
    """

    start: time = time(9)
    end: time = time(18)


_Url = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, pattern=r"^https?://")]


class AlertSettings(_Model):
    """Per-case alerts (server/alerts): where they go and how often they are sent.

    `alertmanager_url` is Alertmanager's base URL (alerts go to its
    ``/api/v2/alerts``); `webhook_url` a plain JSON webhook for places
    without Alertmanager. Neither set: no per-case alerts. `interval_seconds`
    is how often the job runs; `external_url` the server's address as people
    reach it, for the link to each case. The webhook sends one message per
    department per run when `webhook_digest` is true, one per alert otherwise,
    and nothing outside working hours when `quiet_hours` is true (held, then
    sent at the first run in working hours).
    """

    alertmanager_url: _Url | None = None
    webhook_url: _Url | None = None
    interval_seconds: Annotated[int, Strict(), Field(ge=1)] = 60
    external_url: _Url = "http://127.0.0.1:8470"
    webhook_digest: Annotated[bool, Strict()] = True
    quiet_hours: Annotated[bool, Strict()] = True


class ServerSettings(_Model):
    """The server's settings; every value has a production default.

    `max_body_bytes` caps a request body as sent and, for a gzip body, also
    once decompressed. `clock_skew_seconds` is how far past the server's clock
    an event's `at` may lie before the event is rejected. `advance_seconds`
    is the interval of the job that advances case levels as time passes.
    `watch_config` reloads config/ when its YAML files change (SIGHUP always
    does), once no change came for `config_quiet_seconds`.
    `metrics_cache_seconds` is how long ``/metrics`` serves figures read from
    the store before reading them again; `working_hours` the office hours
    (metrics and quiet hours); `alerts` the per-case alerts.
    """

    database: Annotated[str, Strict(), StringConstraints(min_length=1)] = DEFAULT_URL
    config_dir: Path = Path("config")
    listen: Listen = Listen()
    max_body_bytes: Annotated[int, Strict(), Field(ge=1)] = DEFAULT_MAX_BODY_BYTES
    clock_skew_seconds: Annotated[int, Strict(), Field(ge=0)] = 300
    advance_seconds: Annotated[int, Strict(), Field(ge=1)] = 60
    watch_config: Annotated[bool, Strict()] = True
    config_quiet_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    metrics_cache_seconds: Annotated[int, Strict(), Field(ge=0)] = 5
    working_hours: WorkingHours = WorkingHours()
    alerts: AlertSettings = AlertSettings()
    #: Where the case projection runs: a process of its own (default) or a server thread.
    projection: Literal["process", "thread"] = "process"
    #: Worker processes that check and store ingested batches (server.ingestworkers), so
    #: that ingest uses more than one core; 0: in the server process itself.
    ingest_processes: Annotated[int, Strict(), Field(ge=0, le=64)] = 0


def load_settings(path: Path) -> ServerSettings:
    """Read the settings file at `path`; a relative `config_dir` is resolved against its folder.

    Raises `ConfigErrors` naming the file, key and value of every problem (a
    missing or unreadable file, invalid YAML, an unknown key, a wrong value).
    """
    path = Path(path)
    errors: list[ConfigError] = []
    data = read_yaml(path, errors)
    if data is None:
        if errors and "missing" in errors[0].problem:
            problem = "the settings file is missing; config/server.yaml is an example"
            errors = [ConfigError(str(path), "", str(path), problem)]
        raise ConfigErrors(errors)
    try:
        settings = ServerSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(config_errors(str(path), ServerSettings, data, exc)) from None
    if not settings.config_dir.is_absolute():
        settings = settings.model_copy(update={"config_dir": path.parent / settings.config_dir})
    return settings
