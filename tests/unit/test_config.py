"""Settings come from an explicit mapping, are validated, and the README table matches them."""

from __future__ import annotations

from pathlib import Path

import pytest

from albatross.config import ConfigError, Settings, markdown_table, without_credentials

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.http_port == 8080
    assert settings.session_ttl_seconds == 12 * 3600
    assert settings.nats_url is None
    assert settings.admin_email == "admin@albatross.local"
    assert settings.data_dir == Path(".albatross")
    assert settings.gateway_processes == 0  # albatross up: one per two CPUs, 1..4
    assert settings.http_reuse_port is False
    assert settings.gateway_pool_size == 16
    assert settings.pirep_cache_ms == 1000


def test_values_are_parsed_and_typed() -> None:
    settings = Settings.from_env({
        "ALBATROSS_HTTP_PORT": "9090", "ALBATROSS_NATS_URL": "nats://a:4222,nats://b:4222",
        "ALBATROSS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "ALBATROSS_DEV": "yes", "ALBATROSS_STREAM_REPLICAS": "3",
        "ALBATROSS_GATEWAY_PROCESSES": "2", "ALBATROSS_HTTP_REUSE_PORT": "true",
        "ALBATROSS_GATEWAY_POOL_SIZE": "8", "ALBATROSS_PIREP_CACHE_MS": "0",
    })
    assert (settings.gateway_processes, settings.http_reuse_port) == (2, True)
    assert (settings.gateway_pool_size, settings.pirep_cache_ms) == (8, 0)
    assert settings.http_port == 9090
    assert settings.nats_url == "nats://a:4222,nats://b:4222"
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.dev_mode is True
    assert settings.stream_replicas == 3


@pytest.mark.parametrize(("name", "value"), [
    ("ALBATROSS_HTTP_PORT", "eighty"), ("ALBATROSS_HTTP_PORT", "70000"),
    ("ALBATROSS_SESSION_TTL_SECONDS", "5"), ("ALBATROSS_LOG_LEVEL", "loud"),
    ("ALBATROSS_DEV", "maybe"), ("ALBATROSS_STREAM_REPLICAS", "0"),
    ("ALBATROSS_GATEWAY_PROCESSES", "-1"), ("ALBATROSS_GATEWAY_POOL_SIZE", "0"),
    ("ALBATROSS_PIREP_CACHE_MS", "lots"),
])
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_readme_configuration_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme


@pytest.mark.parametrize(("urls", "shown"), [
    ("nats://gateway:pw@nats:4222", "nats://gateway:***@nats:4222"),
    ("nats://a:x@n1:4222, nats://a:x@n2:4222", "nats://a:***@n1:4222,nats://a:***@n2:4222"),
    ("postgresql://owner:p%40ss@db:5432/albatross", "postgresql://owner:***@db:5432/albatross"),
    ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("nats://s3cr3t-token@nats:4222", "nats://***@nats:4222"),
])
def test_urls_in_messages_show_no_password(urls: str, shown: str) -> None:
    assert without_credentials(urls) == shown
