"""Helpers every test package may use.

The `require_service` fixture hands out `require_service(name, reason)`: how a
test gives up on a real service (PostgreSQL, Prometheus, Alertmanager) that is
not there. It skips on a laptop, and fails where the services must be present,
i.e. when the environment variable ESUP_REQUIRE_SERVICES is 1 (CI sets it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import pytest

#: Set to 1 where every service the tests use must be reachable.
REQUIRE_SERVICES_VARIABLE = "ESUP_REQUIRE_SERVICES"


def services_required() -> bool:
    """True where a missing service is a failure rather than a skip."""
    return os.environ.get(REQUIRE_SERVICES_VARIABLE, "") == "1"


def give_up_on_service(name: str, reason: str) -> NoReturn:
    """Give up on a test because the service `name` is unavailable, saying why.

    Skips, unless ESUP_REQUIRE_SERVICES=1, in which case the test fails.
    """
    message = f"{name} is not available: {reason}"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_SERVICES_VARIABLE}=1, so this is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_service() -> Callable[[str, str], NoReturn]:
    """`require_service(name, reason)`: skip, or fail under ESUP_REQUIRE_SERVICES=1."""
    return give_up_on_service
