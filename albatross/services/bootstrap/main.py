"""``albatross-bootstrap``: make everything the services need exist, then exit.

1. the JetStream topology (streams and KV buckets), created or updated;
2. the PostgreSQL read-model migrations, when ``ALBATROSS_DATABASE_URL`` is set (and, with
   ``ALBATROSS_DATABASE_READER_PASSWORD``, the gateway's read-only role as a login role);
3. the first PlatformAdmin (``ALBATROSS_ADMIN_EMAIL``), with ``ALBATROSS_ADMIN_PASSWORD`` or a
   generated one-time password printed once to stdout (to be changed at first login).

Idempotent: safe on every start and from several processes at once (one admin results: its
registration carries a platform-wide claim). Exit 0 on success; 1 with one line on stderr when
a dependency is unreachable or the input is unusable; 2 for bad configuration.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

import nats

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.credentials import JetStreamClaimLookup
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.snapshots import JetStreamSnapshotStore
from albatross.adapters.jetstream.topology import ensure_topology, topology_for
from albatross.adapters.passwords import Argon2PasswordHasher
from albatross.adapters.system import SystemClock, UuidV7Ids
from albatross.application.auth_ports import PasswordHasher
from albatross.application.repository import AggregateRepository
from albatross.application.setup import create_first_admin
from albatross.config import ConfigError, Settings, without_credentials
from albatross.domain.aggregates import USER, default_registry
from albatross.domain.errors import DomainError
from albatross.lifecycle import Shutdown, StartupError, close_nats, connect_dependency, run_main
from albatross.observability import configure_logging, get_logger
from albatross.ports import EventStoreError

CONNECT_TIMEOUT = 10.0
STOP_GRACE = 2.0



async def migrate(database_url: str) -> list[str]:
    # Imported here: a bootstrap without PostgreSQL must not need asyncpg to be importable.
    from albatross.adapters.postgres.migrations import apply_migrations

    return await connect_dependency("PostgreSQL", apply_migrations(database_url),
                                    timeout=60)


async def enable_reader_login(database_url: str, password: str) -> None:
    from albatross.adapters.postgres.roles import enable_reader_login as enable

    await connect_dependency("PostgreSQL", enable(database_url, password), timeout=30)


async def bootstrap(settings: Settings, *, out: TextIO | None = None,
                    hasher: PasswordHasher | None = None) -> None:
    log = get_logger("bootstrap")
    out = out or sys.stdout
    if not settings.nats_url:
        raise ConfigError("ALBATROSS_NATS_URL is required")
    nc = await connect_dependency(
        f"NATS at {without_credentials(settings.nats_url)}",
        nats.connect(settings.nats_url.split(","), connect_timeout=5,
                     max_reconnect_attempts=3, allow_reconnect=False,
                     name="albatross-bootstrap"), timeout=CONNECT_TIMEOUT)
    own_hasher: Argon2PasswordHasher | None = None
    if hasher is None:
        hasher = own_hasher = Argon2PasswordHasher()
    the_hasher: PasswordHasher = hasher
    try:
        topology = topology_for(settings)
        try:
            await ensure_topology(nc.jetstream(), topology)
        except nats.errors.Error as exc:
            raise StartupError(f"cannot set up JetStream at "
                               f"{without_credentials(settings.nats_url)}: {exc!r}") from exc
        log.info("topology ready", streams=[c.name for c in topology.all_streams()])
        if settings.database_url:
            applied = await migrate(settings.database_url)
            log.info("migrations applied", applied=applied)
            if settings.database_reader_password:
                await enable_reader_login(settings.database_url,
                                          settings.database_reader_password)
                log.info("the gateway's read-only role can log in")
        else:
            log.info("ALBATROSS_DATABASE_URL not set: migrations skipped")
        store = JetStreamEventStore(nc, EventCodec(default_registry()), topology.events_stream)
        users = AggregateRepository(USER, store, JetStreamSnapshotStore(
            nc, topology.snapshots_bucket))
        claims = JetStreamClaimLookup(nc, topology.events_stream)
        try:
            admin = await create_first_admin(users, claims, the_hasher, SystemClock(),
                                             UuidV7Ids(), email=settings.admin_email,
                                             password=settings.admin_password)
        except DomainError as exc:
            raise StartupError(f"cannot create the first admin ({settings.admin_email}): "
                               f"{_domain_detail(exc)}") from exc
        except EventStoreError as exc:
            raise StartupError(f"cannot create the first admin: {exc}") from exc
        if admin is None:
            log.info("a PlatformAdmin exists already")
        elif admin.one_time_password is not None:
            # The one place a password is ever shown: once, to the operator, never logged.
            out.write(f"First PlatformAdmin created: email {admin.email}, one-time password "
                      f"{admin.one_time_password} (you must change it at first login)\n")
            out.flush()
            log.info("first PlatformAdmin created with a one-time password", user_id=admin.user_id)
        else:
            log.info("first PlatformAdmin created with ALBATROSS_ADMIN_PASSWORD",
                     user_id=admin.user_id)
    finally:
        if own_hasher is not None:
            own_hasher.close()
        await close_nats(nc)


def _domain_detail(exc: DomainError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(f"{e.field} {e.message}" for e in errors)
    return exc.detail


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"albatross-bootstrap: {exc}\n")
        raise SystemExit(2) from None
    configure_logging("bootstrap", settings.log_level, human=settings.dev_mode)

    async def serve(_shutdown: Shutdown) -> None:
        try:
            await bootstrap(settings)
        except (OSError, nats.errors.Error) as exc:
            raise StartupError(f"a dependency is unreachable: {exc!r}") from exc

    # A job, not a server: on SIGTERM the step in progress gets a moment to finish, then it is
    # cancelled and the process exits 0 (running it again is safe: every step is idempotent).
    run_main(serve, name="albatross-bootstrap", cancel_after=STOP_GRACE)


if __name__ == "__main__":
    main()
