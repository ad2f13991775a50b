"""The agent's config file: the shipped example loads; problems name file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import DropFolderConfig, ExchangeDbConfig, load_agent_config
from agent.service import check_departments
from casework.configfiles import load_config
from casework.errors import ConfigErrors

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "agent.yaml"


def copy_example(tmp_path: Path, old: str = "", new: str = "") -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("token_file: /etc/esup/agent.token", "token_file: agent.token")
    text = text.replace("# config_dir: /etc/esup", f"config_dir: {ROOT / 'config'}")
    if old:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "agent.token").write_text("s3cret\n", encoding="utf-8")
    return path


def test_the_shipped_example_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = load_agent_config(copy_example(tmp_path))
    assert config.name == "agent-fgw"
    assert config.departments == ("fgw",)
    assert config.token() == "s3cret"
    assert config.server.token_file == tmp_path / "agent.token"
    assert config.state_db == Path("/var/lib/esup-agent/agent.db")
    (source,) = config.sources
    assert isinstance(source, DropFolderConfig)
    assert source.finish_after_seconds == 60
    assert config.http.port == 9817
    assert config.notify.contact_of("fgw") == "13800000000"
    assert config.notify.webhook_url is None
    assert str(config.monitor.work_start) == "08:30:00"
    assert config.clocks.closed_retention_days == 90
    catalog = config.catalog_settings()
    assert catalog.config_dir == ROOT / "config"
    assert catalog.cache_file == Path("/var/lib/esup-agent/catalog.json")
    assert catalog.refresh_seconds == 3600


def test_without_config_dir_the_catalog_comes_from_the_server(tmp_path: Path) -> None:
    path = copy_example(tmp_path)
    text = path.read_text(encoding="utf-8").replace(f"config_dir: {ROOT / 'config'}", "")
    text = text.replace("# cache_file: /var/lib/esup-agent/catalog.json", "cache_file: c.json")
    path.write_text(text, encoding="utf-8")
    catalog = load_agent_config(path).catalog_settings()
    assert (catalog.server_url, catalog.config_dir) == ("https://esup.example.gov.cn", None)
    assert catalog.cache_file == tmp_path / "c.json"


def test_the_commented_exchange_database_source_is_valid_too(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("  # - kind: exchange_db") :]
    uncommented = "\n".join(x.replace("  # ", "  ", 1) for x in block.splitlines())
    path = copy_example(tmp_path, block, uncommented + "\n")
    config = load_agent_config(path)
    source = config.sources[1]
    assert isinstance(source, ExchangeDbConfig)
    assert source.columns["event_id"] == "evt_no"


@pytest.mark.parametrize(
    ("old", "new", "key", "value"),
    [
        ("batch_size: 500   #", "batch_size: 0   #", "delivery.batch_size", "0"),
        ("polling: false", "polling: sometimes", "sources[0].polling", "'sometimes'"),
        ("departments: [fgw]", "departments: []", "departments", "[]"),
        ("name: exports", "name: 'bad name'", "sources[0].name", "'bad name'"),
        ("outbox_cap_bytes: 536870912", "outbox_cap_bytes: 10", "outbox_cap_bytes", "10"),
        ("port: 9817", "port: 70000", "http.port", "70000"),
        ("max_attempts: 20", "max_attempts: 0", "notify.max_attempts", "0"),
        ("refresh_seconds: 3600 ", "refresh_seconds: -1 ", "catalog.refresh_seconds", "-1"),
        ("batch_size: 500      ", "batch_size: zero      ", "clocks.batch_size", "'zero'"),
        ('work_end: "17:30"', 'work_end: "25:99"', "monitor.work_end", "'25:99'"),
    ],
)
def test_a_bad_value_is_named_with_its_file_and_key(
    tmp_path: Path, old: str, new: str, key: str, value: str
) -> None:
    path = copy_example(tmp_path, old, new)
    with pytest.raises(ConfigErrors) as caught:
        load_agent_config(path)
    (error,) = caught.value.errors
    assert error.path == str(path)
    assert error.key == key
    assert f"(got {value})" in str(error)


def test_an_unknown_key_lists_the_valid_ones(tmp_path: Path) -> None:
    path = copy_example(tmp_path, "rescan_seconds: 30", "rescan_second: 30")
    with pytest.raises(ConfigErrors) as caught:
        load_agent_config(path)
    (error,) = caught.value.errors
    assert error.key == "sources[0].rescan_second"
    assert "rescan_seconds" in error.choices


def test_token_and_token_file_are_exclusive(tmp_path: Path) -> None:
    path = copy_example(tmp_path, "token_file: agent.token", "token_file: agent.token\n  token: x")
    with pytest.raises(ConfigErrors, match="exactly one of 'token' and 'token_file'"):
        load_agent_config(path)


def test_a_missing_token_file_is_named(tmp_path: Path) -> None:
    path = copy_example(tmp_path, "token_file: agent.token", "token_file: nowhere.token")
    with pytest.raises(ConfigErrors) as caught:
        load_agent_config(path)
    assert caught.value.errors[0].key == "server.token_file"
    assert "nowhere.token" in str(caught.value)


def test_a_missing_file_points_at_the_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match=r"config/agent\.yaml is an example"):
        load_agent_config(tmp_path / "nope.yaml")


def test_an_agent_department_unknown_to_the_deployment_is_refused(tmp_path: Path) -> None:
    config = load_agent_config(copy_example(tmp_path, "departments: [fgw]", "departments: [zzz]"))
    with pytest.raises(ConfigErrors, match="'zzz'"):
        check_departments(config, load_config(ROOT / "config"), "the catalog")


def test_an_unknown_key_in_a_section_is_named(tmp_path: Path) -> None:
    path = copy_example(
        tmp_path, "  timeout_seconds: 10\n  max_attempts", "  timeout: 10\n  max_attempts"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_agent_config(path)
    (error,) = caught.value.errors
    assert error.key == "notify.timeout"
