"""``albatross-bootstrap``: make the JetStream topology (and, later, migrations and the first
admin) exist. Idempotent: safe to run on every start and from several processes at once."""

from __future__ import annotations

import asyncio
import os
import sys

import nats

from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.config import ConfigError, Settings
from albatross.observability import configure_logging, get_logger


async def bootstrap(settings: Settings) -> None:
    log = get_logger("bootstrap")
    if not settings.nats_url:
        raise ConfigError("ALBATROSS_NATS_URL is required")
    nc = await nats.connect(settings.nats_url.split(","), connect_timeout=5,
                            max_reconnect_attempts=3)
    try:
        topology = Topology(replicas=settings.stream_replicas)
        await ensure_topology(nc.jetstream(), topology)
        log.info("topology ready", streams=[c.name for c in topology.all_streams()])
    finally:
        await nc.close()


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"albatross-bootstrap: {exc}\n")
        raise SystemExit(2) from None
    configure_logging("bootstrap", settings.log_level, human=settings.dev_mode)
    try:
        asyncio.run(bootstrap(settings))
    except (OSError, nats.errors.Error, ConfigError) as exc:
        sys.stderr.write(f"albatross-bootstrap: a dependency is unreachable: {exc!r}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
