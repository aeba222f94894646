"""The nats-server configuration files of the deployments parse with the pinned nats-server.

(What the authorization allows and refuses is proven on a running server by
tests/integration/test_nats_permissions.py.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from albatross.infra.nats_server import NatsServerError, find_nats_server
from tests.deploy.tools import DEPLOY, run

USERS = ("BOOTSTRAP", "GATEWAY", "PROJECTOR", "NOTIFIER", "INTEGRATIONS", "ADMIN")


def nats_server() -> Path:
    try:
        return find_nats_server()
    except NatsServerError as exc:
        pytest.skip(str(exc))


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    env.update({f"NATS_{user}_PASSWORD": f"test-{user.lower()}" for user in USERS})
    env.update(extra)
    return env


@pytest.mark.parametrize(("config", "extra"), [
    ("standalone.conf", {"NATS_SERVER_NAME": "nats"}),
    ("cluster.conf", {"SERVER_NAME": "nats-0"}),
])
def test_config_is_valid(config: str, extra: dict[str, str], tmp_path: Path) -> None:
    for name in (config, "auth.conf"):
        shutil.copy(DEPLOY / "nats" / name, tmp_path / name)
    result = run([nats_server(), "-t", "-c", tmp_path / config], env=environment(**extra))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_password_stops_the_server(tmp_path: Path) -> None:
    for name in ("standalone.conf", "auth.conf"):
        shutil.copy(DEPLOY / "nats" / name, tmp_path / name)
    env = environment(NATS_SERVER_NAME="nats")
    del env["NATS_GATEWAY_PASSWORD"]
    result = run([nats_server(), "-t", "-c", tmp_path / "standalone.conf"], env=env)
    assert result.returncode != 0
    assert "NATS_GATEWAY_PASSWORD" in result.stdout + result.stderr
