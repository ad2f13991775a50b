"""`require_service`: a missing service skips a test, or fails it where services are required."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import pytest

Require = Callable[[str, str], NoReturn]


def test_a_missing_service_skips_on_a_laptop(
    require_service: Require, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESUP_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not available: refused"):
        require_service("PostgreSQL", "refused")


def test_a_missing_service_fails_where_services_are_required(
    require_service: Require, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESUP_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is not available: refused"):
        require_service("PostgreSQL", "refused")
