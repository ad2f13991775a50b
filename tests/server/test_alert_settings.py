"""The settings of metrics and alerts: defaults, the shipped example, clear errors."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from casework.errors import ConfigErrors
from server.settings import AlertSettings, ServerSettings, WorkingHours, load_settings

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_the_shipped_example_gives_the_defaults() -> None:
    settings = load_settings(CONFIG / "server.yaml")

    assert settings.metrics_cache_seconds == ServerSettings().metrics_cache_seconds == 5
    assert settings.working_hours == WorkingHours() == WorkingHours(start=time(9), end=time(18))
    assert settings.alerts == AlertSettings()
    assert settings.alerts.alertmanager_url is None
    assert settings.alerts.webhook_url is None


def test_alert_receivers_and_hours_are_read(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(
        'working_hours: {start: "08:30", end: "17:30"}\n'
        "alerts:\n  alertmanager_url: http://127.0.0.1:9093\n  interval_seconds: 30\n",
        encoding="utf-8",
    )

    settings = load_settings(path)

    assert settings.working_hours.start == time(8, 30)
    assert settings.alerts.alertmanager_url == "http://127.0.0.1:9093"
    assert settings.alerts.interval_seconds == 30


def test_a_url_that_is_not_http_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("alerts:\n  webhook_url: chat.example/hook\n", encoding="utf-8")

    with pytest.raises(ConfigErrors) as caught:
        load_settings(path)

    assert "webhook_url" in str(caught.value)
    assert "chat.example/hook" in str(caught.value)
