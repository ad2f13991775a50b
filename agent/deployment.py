"""The time zone of the deployment an agent works with.

    zone_of(deployment) -> ZoneInfo

The deployment itself (catalog, departments, calendar) comes from the server
through agent.catalogcache, or from a local `config_dir`; agent.service loads it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from casework.config import Deployment

__all__ = ["DEFAULT_ZONE", "zone_of"]

#: The time zone when no deployment is known yet.
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")


def zone_of(deployment: Deployment | None) -> ZoneInfo:
    """The deployment's time zone, for timestamps without an offset."""
    return DEFAULT_ZONE if deployment is None else deployment.settings.zone
