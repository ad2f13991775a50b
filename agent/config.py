"""The agent's settings: one YAML file, read into a frozen `AgentConfig`.

    load_agent_config(path) -> AgentConfig

config/agent.yaml is a documented example and docs/agent.md the reference of
every key. Relative paths (state_dir, config_dir, token_file, ca_file, a
drop folder's path, catalog.cache_file, monitor.workflow_pidfile) are taken
relative to the folder that holds the file.
Problems are reported all at once as `ConfigErrors`, each naming the file,
the key and the offending value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from agent.catalogcache import CatalogSettings
from agent.httpserver import HttpSettings
from agent.liveclocks import LiveClockSettings
from agent.notify import NotifySettings
from agent.selfmonitor import MonitorSettings
from casework.configfiles import config_errors, read_yaml
from casework.errors import ConfigError, ConfigErrors

__all__ = [
    "EVENT_FIELDS",
    "AgentConfig",
    "CatalogSection",
    "CsvMapping",
    "DeliveryConfig",
    "DropFolderConfig",
    "ExchangeDbConfig",
    "ServerConfig",
    "SourceConfig",
    "load_agent_config",
]

Text = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]
Code = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Seconds = Annotated[float, Field(gt=0)]
FieldName = Literal[
    "event_id",
    "case_id",
    "department",
    "item",
    "type",
    "at",
    "promised_days",
    "legal_days",
    "reason",
    "days",
    "step",
    "handler",
    "step_days",
    "result",
]
#: Wire fields a column mapping may fill (docs/wire-format.md); `seq` and `source` are the agent's.
EVENT_FIELDS: Final[tuple[str, ...]] = get_args(FieldName)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerConfig(_Model):
    """Where events go: the server's base URL, the bearer token, TLS verification.

    Exactly one of `token` and `token_file` (a file holding the token, trailing
    whitespace ignored). `ca_file` is a PEM bundle to verify the server with;
    without it the system's trust store is used. `verify: false` is for tests only.
    """

    url: Text
    token: Text | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    verify: bool = True
    timeout_seconds: Seconds = 30.0

    @model_validator(mode="after")
    def _one_token(self) -> ServerConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of 'token' and 'token_file'")
        return self


class DeliveryConfig(_Model):
    """Batching and retrying. A batch leaves when it holds `batch_size` events or its
    oldest event has waited `batch_age_seconds`. Retries back off exponentially from
    `backoff_seconds` up to `max_backoff_seconds`, with jitter. On SIGTERM the agent
    keeps delivering for at most `stop_flush_seconds`."""

    batch_size: Annotated[int, Strict(), Field(ge=1, le=50_000)] = 500
    batch_age_seconds: Annotated[float, Field(ge=0)] = 1.0
    backoff_seconds: Seconds = 0.5
    max_backoff_seconds: Seconds = 300.0
    stop_flush_seconds: Annotated[float, Field(ge=0)] = 10.0


class CsvMapping(_Model):
    """How a CSV export (with a header row) becomes events: `columns` maps an event
    field to a column name; `constants` gives a field a fixed value for every row."""

    columns: dict[FieldName, Text]
    constants: dict[FieldName, Text] = {}
    delimiter: Annotated[str, StringConstraints(min_length=1, max_length=1)] = ","


class DropFolderConfig(_Model):
    """A folder into which the workflow system writes JSON Lines (or CSV) files.

    What was read of a file is remembered (by its fingerprint) for
    `forget_after_days` after it was last read, once it is gone from the folder.
    """

    kind: Literal["dropfolder"]
    name: Code
    path: Path
    patterns: tuple[Text, ...] = ("*.jsonl",)
    polling: bool = False
    rescan_seconds: Seconds = 30.0
    finish_after_seconds: Annotated[float, Field(ge=0)] = 60.0
    forget_after_days: Annotated[float, Field(gt=0)] = 30.0
    csv: CsvMapping | None = None


class ExchangeDbConfig(_Model):
    """An exchange database (前置库) polled with a query, keyset-paginated on
    (`updated_at_column`, `id_column`) which the query must return."""

    kind: Literal["exchange_db"]
    name: Code
    url: Text
    query: Text
    columns: dict[FieldName, Text]
    constants: dict[FieldName, Text] = {}
    updated_at_column: Text = "updated_at"
    id_column: Text = "id"
    poll_seconds: Seconds = 10.0
    page_size: Annotated[int, Strict(), Field(ge=1, le=100_000)] = 1000
    timezone: Text = "Asia/Shanghai"


SourceConfig = Annotated[DropFolderConfig | ExchangeDbConfig, Field(discriminator="kind")]


class CatalogSection(_Model):
    """How the catalog and calendar are kept: fetched from `server` (its URL, token and
    TLS settings) unless `config_dir` names a local directory, and cached in
    `cache_file` (default `state_dir/catalog.json`) for when the server is away."""

    cache_file: Path | None = None
    timeout_seconds: Seconds = 10.0
    refresh_seconds: Seconds = 3600.0


class AgentConfig(_Model):
    """The whole agent configuration; see docs/agent.md.

    `departments` are the codes this agent reports for: an event naming another
    is rejected locally. `config_dir` is a deployment configuration directory
    (catalog, calendar). `outbox_cap_bytes` is the disk the outbox's events may
    take before the sources pause.
    """

    name: Code
    departments: Annotated[tuple[Code, ...], Field(min_length=1)]
    server: ServerConfig
    state_dir: Path
    config_dir: Path | None = None
    outbox_cap_bytes: Annotated[int, Strict(), Field(ge=1024)] = 512 * 1024 * 1024
    delivery: DeliveryConfig = DeliveryConfig()
    sources: tuple[SourceConfig, ...]
    catalog: CatalogSection = CatalogSection()
    clocks: LiveClockSettings = LiveClockSettings()
    notify: NotifySettings = NotifySettings()
    monitor: MonitorSettings = MonitorSettings()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="after")
    def _unique_sources(self) -> AgentConfig:
        if not self.sources:
            raise ValueError("list at least one source (a dropfolder or an exchange_db)")
        names = [s.name for s in self.sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source names must be unique; used more than once: {twice}")
        return self

    @property
    def state_db(self) -> Path:
        """The state database: outbox, offsets, checkpoints, dead letters."""
        return self.state_dir / "agent.db"

    def catalog_settings(self) -> CatalogSettings:
        """Where agent.catalogcache finds the deployment: `config_dir` when set, else the
        server (with this agent's token and CA file), cached in `catalog.cache_file`."""
        cache_file = self.catalog.cache_file or self.state_dir / "catalog.json"
        common = {
            "cache_file": cache_file,
            "timeout_seconds": self.catalog.timeout_seconds,
            "refresh_seconds": self.catalog.refresh_seconds,
        }
        if self.config_dir is not None:
            return CatalogSettings(config_dir=self.config_dir, **common)
        return CatalogSettings(server_url=self.server.url, ca_file=self.server.ca_file, **common)

    def token(self) -> str:
        """The bearer token, read from `server.token_file` when that is given."""
        if self.server.token is not None:
            return self.server.token
        assert self.server.token_file is not None  # checked at validation
        return self.server.token_file.read_text(encoding="utf-8").strip()


def _resolve(base: Path, path: Path | None) -> Path | None:
    if path is None or path.is_absolute():
        return path
    return base / path


def _with_paths(config: AgentConfig, base: Path) -> AgentConfig:
    server = config.server.model_copy(
        update={
            "token_file": _resolve(base, config.server.token_file),
            "ca_file": _resolve(base, config.server.ca_file),
        }
    )
    sources = tuple(
        s.model_copy(update={"path": _resolve(base, s.path)})
        if isinstance(s, DropFolderConfig)
        else s
        for s in config.sources
    )
    catalog = config.catalog.model_copy(
        update={"cache_file": _resolve(base, config.catalog.cache_file)}
    )
    monitor = config.monitor.model_copy(
        update={"workflow_pidfile": _resolve(base, config.monitor.workflow_pidfile)}
    )
    return config.model_copy(
        update={
            "server": server,
            "catalog": catalog,
            "monitor": monitor,
            "state_dir": _resolve(base, config.state_dir),
            "config_dir": _resolve(base, config.config_dir),
            "sources": sources,
        }
    )


_KINDS: Final[dict[str, type[BaseModel]]] = {
    "dropfolder": DropFolderConfig,
    "exchange_db": ExchangeDbConfig,
}


def _errors(path: Path, data: dict[str, Any], exc: ValidationError) -> list[ConfigError]:
    """casework's config errors, with a source's kind taken out of the key path
    (``sources[0].rescan_seconds``, not ``sources[0].dropfolder.rescan_seconds``) and
    the valid keys of the source's kind listed for an unknown key."""
    details: list[Any] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if len(loc) >= 3 and loc[0] == "sources" and loc[2] in _KINDS:
            loc = loc[:2] + loc[3:]
        detail: dict[str, Any] = {"type": err["type"], "loc": loc, "input": err["input"]}
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        details.append(detail)
    plain = ValidationError.from_exception_data(exc.title, details)
    out: list[ConfigError] = []
    for error in config_errors(str(path), AgentConfig, data, plain):
        match = re.fullmatch(r"sources\[(\d+)\]\.[^.\[]+", error.key)
        sources = data.get("sources")
        if match and error.problem.startswith("unknown key") and isinstance(sources, list):
            entry = sources[int(match.group(1))]
            kind = entry.get("kind") if isinstance(entry, dict) else None
            model = _KINDS.get(kind) if isinstance(kind, str) else None
            if model is not None:
                error = ConfigError(
                    error.path, error.key, error.value, error.problem, tuple(model.model_fields)
                )
        out.append(error)
    return out


def load_agent_config(path: Path) -> AgentConfig:
    """Read the agent's config file at `path`, relative paths resolved against its folder.

    Raises `ConfigErrors` naming the file, key and value of every problem (a
    missing or unreadable file, invalid YAML, an unknown key, a wrong value),
    and a token file that cannot be read.
    """
    path = Path(path)
    errors: list[ConfigError] = []
    data = read_yaml(path, errors)
    if data is None:
        if errors and "missing" in errors[0].problem:
            problem = "the agent's config file is missing; config/agent.yaml is an example"
            errors = [ConfigError(str(path), "", str(path), problem)]
        raise ConfigErrors(errors)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(_errors(path, data, exc)) from None
    config = _with_paths(config, path.parent)
    token_file = config.server.token_file
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            problem = f"the token file cannot be read ({exc.strerror})"
            raise ConfigErrors(
                [ConfigError(str(path), "server.token_file", str(token_file), problem)]
            ) from None
        if not token:
            problem = "the token file is empty; put the token from `esup-server token create`"
            raise ConfigErrors(
                [ConfigError(str(path), "server.token_file", str(token_file), problem)]
            )
    return config
