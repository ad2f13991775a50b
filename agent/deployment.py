"""The deployment an agent works with: catalog, departments, calendar.

    load_deployment(config) -> Deployment | None

For now read from the local configuration directory `config_dir` (the same
files the server reads, casework.configfiles.load_config); this one function
is where the catalog cached from the server takes over.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from agent.config import AgentConfig
from casework.config import Deployment
from casework.configfiles import load_config
from casework.errors import ConfigError, ConfigErrors

__all__ = ["DEFAULT_ZONE", "load_deployment", "zone_of"]

#: The time zone when no deployment is configured.
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")


def load_deployment(config: AgentConfig) -> Deployment | None:
    """The deployment of `config.config_dir`, None when the config names none.

    Raises `ConfigErrors` for a broken directory, and for an agent department
    the deployment does not know.
    """
    if config.config_dir is None:
        return None
    deployment = load_config(config.config_dir)
    known = {d.code for d in deployment.departments}
    unknown = [code for code in config.departments if code not in known]
    if unknown:
        raise ConfigErrors(
            [
                ConfigError(
                    str(config.config_dir / "departments.yaml"),
                    "departments",
                    code,
                    "the agent's department is not in the deployment",
                )
                for code in unknown
            ]
        )
    return deployment


def zone_of(deployment: Deployment | None) -> ZoneInfo:
    """The deployment's time zone, for timestamps without an offset."""
    return DEFAULT_ZONE if deployment is None else deployment.settings.zone
