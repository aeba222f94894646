"""Settings come from an explicit mapping, are validated, and the README table matches them."""

from __future__ import annotations

from pathlib import Path

import pytest

from albatross.config import ConfigError, Settings, markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.http_port == 8080
    assert settings.session_ttl_seconds == 12 * 3600
    assert settings.nats_url is None
    assert settings.admin_email == "admin@albatross.local"
    assert settings.data_dir == Path(".albatross")


def test_values_are_parsed_and_typed() -> None:
    settings = Settings.from_env({
        "ALBATROSS_HTTP_PORT": "9090", "ALBATROSS_NATS_URL": "nats://a:4222,nats://b:4222",
        "ALBATROSS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "ALBATROSS_DEV": "yes", "ALBATROSS_STREAM_REPLICAS": "3",
    })
    assert settings.http_port == 9090
    assert settings.nats_url == "nats://a:4222,nats://b:4222"
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.dev_mode is True
    assert settings.stream_replicas == 3


@pytest.mark.parametrize(("name", "value"), [
    ("ALBATROSS_HTTP_PORT", "eighty"), ("ALBATROSS_HTTP_PORT", "70000"),
    ("ALBATROSS_SESSION_TTL_SECONDS", "5"), ("ALBATROSS_LOG_LEVEL", "loud"),
    ("ALBATROSS_DEV", "maybe"), ("ALBATROSS_STREAM_REPLICAS", "0"),
])
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_readme_configuration_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme
