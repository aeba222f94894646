"""Typed settings read from ``ALBATROSS_*`` environment variables.

Settings are built once, in each process's ``main()``, from an explicit mapping (normally
``os.environ``); nothing reads the environment at import time. ``SETTINGS_TABLE`` is the one
source for both the parser and the configuration table in the README.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def without_credentials(urls: str) -> str:
    """``urls`` (one, or NATS's comma-separated list) fit for a message: each password is
    replaced by ``***`` (the deploy manifests put every service's NATS password in its URL),
    and so is a user without one (in a NATS URL, that is a token)."""
    shown = []
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        user, _, host = parts.netloc.rpartition("@")
        if user:
            kept = f"{parts.username}:" if parts.password is not None else ""
            parts = parts._replace(netloc=f"{kept}***@{host}")
        shown.append(urlunsplit(parts))
    return ",".join(shown)


def local_url(host: str, port: int) -> str:
    """The URL by which this machine reaches a server listening on ``host:port`` (the
    wildcard addresses become loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


class ConfigError(ValueError):
    """An ``ALBATROSS_*`` variable holds a value that cannot be used."""


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"expected {low}..{high}, got {value}")
        return value

    return parse


def _optional_str(raw: str) -> str | None:
    return raw or None


def _login_password(raw: str) -> str | None:
    if raw and not (raw.isascii() and raw.isprintable()):
        raise ConfigError("expected printable ASCII characters")
    return raw or None


def _path(raw: str) -> Path:
    return Path(raw)


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"expected a boolean, got {raw!r}")


def _log_level(raw: str) -> str:
    level = raw.strip().lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"expected debug|info|warning|error, got {raw!r}")
    return level


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    field: str
    env: str
    default: str
    parse: Callable[[str], Any]
    description: str


SETTINGS_TABLE: tuple[SettingSpec, ...] = (
    SettingSpec("nats_url", "ALBATROSS_NATS_URL", "", _optional_str,
                "NATS server URL(s), comma-separated. Empty: `albatross up` starts an "
                "embedded nats-server."),
    SettingSpec("database_url", "ALBATROSS_DATABASE_URL", "", _optional_str,
                "PostgreSQL DSN. Empty: `albatross up` starts an embedded PostgreSQL."),
    SettingSpec("database_reader_password", "ALBATROSS_DATABASE_READER_PASSWORD", "",
                _login_password,
                "Bootstrap: lets the gateway's read-only role `albatross_reader` log in with "
                "this password (printable ASCII), so a gateway can be given its own "
                "`ALBATROSS_DATABASE_URL` as that role. Empty: the role stays NOLOGIN and the "
                "gateway switches to it from the owner's login (docs/security.md)."),
    SettingSpec("data_dir", "ALBATROSS_DATA_DIR", ".albatross", _path,
                "Where the embedded servers keep their data (survives restarts)."),
    SettingSpec("http_host", "ALBATROSS_HTTP_HOST", "127.0.0.1", str,
                "Address the public origin (gateway) listens on."),
    SettingSpec("http_port", "ALBATROSS_HTTP_PORT", "8080", _int_in(0, 65535),
                "Port of the public origin: web UI, `/api/*` and `/api/ws`."),
    SettingSpec("http_reuse_port", "ALBATROSS_HTTP_REUSE_PORT", "false", _bool,
                "Let several gateway processes listen on the same port (Linux `SO_REUSEPORT`: "
                "the kernel spreads new connections among them). `albatross up` sets it when "
                "it runs more than one gateway process."),
    SettingSpec("gateway_processes", "ALBATROSS_GATEWAY_PROCESSES", "0", _int_in(0, 64),
                "How many gateway processes `albatross up` runs on the one HTTP port. `0`: "
                "one per two CPUs the machine lets it use, at least 1 and at most 4 (one "
                "gateway process is single-threaded Python; the rest of the machine is NATS', "
                "PostgreSQL's and the other services')."),
    SettingSpec("hashing_slots_dir", "ALBATROSS_HASHING_SLOTS_DIR", "", _optional_path,
                "A directory whose lock files bound argon2 hashing across the processes that "
                "share it: one hash per two CPUs at once among all of them. `albatross up` sets "
                "it when it runs several gateway processes. Empty: each process bounds its own."),
    SettingSpec("gateway_pool_size", "ALBATROSS_GATEWAY_POOL_SIZE", "16", _int_in(1, 1000),
                "PostgreSQL connections in each gateway process's read pool."),
    SettingSpec("pirep_cache_ms", "ALBATROSS_PIREP_CACHE_MS", "1000", _int_in(0, 60_000),
                "The gateway answers `GET /api/pireps/{id}` from memory for up to this long, "
                "and only while no projected change has been notified since (any change "
                "empties it; docs/architecture.md). `0` turns the cache off."),
    SettingSpec("http_header_timeout", "ALBATROSS_HTTP_HEADER_TIMEOUT", "10", _int_in(1, 3600),
                "Seconds the gateway gives a client to send a request's headers (also how "
                "long an idle keep-alive connection stays open); slower clients are dropped."),
    SettingSpec("http_body_timeout", "ALBATROSS_HTTP_BODY_TIMEOUT", "10", _int_in(1, 3600),
                "Seconds the gateway gives a client to send a request's body once its "
                "headers are in; slower clients are dropped."),
    SettingSpec("projector_port", "ALBATROSS_PROJECTOR_PORT", "8081", _int_in(0, 65535),
                "Operations port of the projector (`/healthz`, `/readyz`, `/metrics`)."),
    SettingSpec("notifier_port", "ALBATROSS_NOTIFIER_PORT", "8082", _int_in(0, 65535),
                "Port of the notifier (WebSocket and operations endpoints)."),
    SettingSpec("admin_email", "ALBATROSS_ADMIN_EMAIL", "admin@albatross.local", str,
                "Email of the first PlatformAdmin, created by bootstrap."),
    SettingSpec("admin_password", "ALBATROSS_ADMIN_PASSWORD", "", _optional_str,
                "Password of the first PlatformAdmin. Empty: a one-time password is "
                "generated, printed once, and must be changed at first login."),
    SettingSpec("session_ttl_seconds", "ALBATROSS_SESSION_TTL_SECONDS", "43200",
                _int_in(60, 30 * 86400), "Lifetime of a login session (default 12 h)."),
    SettingSpec("login_limit_per_address", "ALBATROSS_LOGIN_LIMIT_PER_ADDRESS", "0",
                _int_in(0, 1_000_000),
                "Failed logins allowed per client address per 15 min; `0` turns it off."),
    SettingSpec("stream_replicas", "ALBATROSS_STREAM_REPLICAS", "1", _int_in(1, 5),
                "JetStream replica count of the streams and buckets (3 in a cluster)."),
    SettingSpec("allowed_origins", "ALBATROSS_ALLOWED_ORIGINS", "", _origins,
                "Extra WebSocket `Origin`s allowed, comma-separated (same-origin always is)."),
    SettingSpec("web_dir", "ALBATROSS_WEB_DIR", "web/dist", _path,
                "Folder of the built web UI that the gateway serves at `/` (a relative path "
                "is taken from the working directory; the gateway warns when it is missing)."),
    SettingSpec("log_level", "ALBATROSS_LOG_LEVEL", "info", _log_level,
                "Minimum log level: debug, info, warning or error."),
    SettingSpec("dev_mode", "ALBATROSS_DEV", "false", _bool,
                "Human-readable console logs instead of JSON lines."),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting a process may use; each process reads the fields it needs."""

    nats_url: str | None
    database_url: str | None
    database_reader_password: str | None
    data_dir: Path
    http_host: str
    http_port: int
    http_reuse_port: bool
    gateway_processes: int
    hashing_slots_dir: Path | None
    gateway_pool_size: int
    pirep_cache_ms: int
    http_header_timeout: int
    http_body_timeout: int
    projector_port: int
    notifier_port: int
    admin_email: str
    admin_password: str | None
    session_ttl_seconds: int
    login_limit_per_address: int
    stream_replicas: int
    allowed_origins: tuple[str, ...]
    web_dir: Path
    log_level: str
    dev_mode: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values: dict[str, Any] = {}
        for spec in SETTINGS_TABLE:
            raw = env.get(spec.env, spec.default)
            try:
                values[spec.field] = spec.parse(raw)
            except ConfigError as exc:
                raise ConfigError(f"{spec.env}: {exc}") from None
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def markdown_table() -> str:
    """The configuration table for the README, generated so it cannot drift."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in SETTINGS_TABLE:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        lines.append(f"| `{spec.env}` | {default} | {spec.description} |")
    return "\n".join(lines)
