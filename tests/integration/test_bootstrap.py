"""albatross-bootstrap against real servers: idempotent, race-safe, clear when it cannot run."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import nats
import pytest

from albatross.adapters.jetstream.topology import Topology
from albatross.adapters.memory import FixedClock
from albatross.adapters.memory_auth import InMemoryKeyValue
from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.adapters.system import SystemClock, UuidV7Ids
from albatross.application.auth import LoginService
from albatross.application.setup import is_initialized
from albatross.application.throttle import LoginThrottle
from albatross.config import Settings
from albatross.infra.nats_server import NatsServer
from albatross.services.bootstrap.main import bootstrap
from albatross.services.gateway.container import jetstream_auth

pytestmark = pytest.mark.real
EMAIL = "root@albatross.test"


def settings(nats_url: str, **extra: str) -> Settings:
    return Settings.from_env({"ALBATROSS_NATS_URL": nats_url, "ALBATROSS_ADMIN_EMAIL": EMAIL,
                              **extra})


async def login(nats_url: str, email: str, password: str, hasher: Argon2PasswordHasher) -> bool:
    nc = await nats.connect(nats_url)
    try:
        auth = await jetstream_auth(nc, Topology())
        clock = SystemClock()
        service = LoginService(auth.repos.users, auth.claims, auth.sessions, hasher, clock,
                               UuidV7Ids(), session_ttl=timedelta(hours=1),
                               email_throttle=LoginThrottle(InMemoryKeyValue(
                                   FixedClock(clock.now()), timedelta(minutes=15)), clock))
        result = await service.login(email, password)
        return result.user.must_change_password
    finally:
        await nc.close()


async def test_two_concurrent_bootstraps_create_one_admin_with_a_one_time_password(
        fresh_nats: NatsServer) -> None:
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
    outs = [io.StringIO(), io.StringIO()]
    try:
        await asyncio.gather(*(bootstrap(settings(fresh_nats.url), out=out, hasher=hasher)
                               for out in outs))
        printed = [out.getvalue() for out in outs if out.getvalue()]
        assert len(printed) == 1, printed
        line = printed[0].strip()
        assert EMAIL in line
        assert "one-time password" in line
        password = line.split("one-time password ")[1].split(" ")[0]
        assert len(password) >= 16
        assert await login(fresh_nats.url, EMAIL, password, hasher) is True
        again = io.StringIO()
        await bootstrap(settings(fresh_nats.url), out=again, hasher=hasher)
        assert again.getvalue() == ""
        nc = await nats.connect(fresh_nats.url)
        try:
            assert await is_initialized((await jetstream_auth(nc, Topology())).claims)
        finally:
            await nc.close()
    finally:
        hasher.close()


async def test_a_given_admin_password_is_not_printed_nor_temporary(
        fresh_nats: NatsServer) -> None:
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
    out = io.StringIO()
    try:
        await bootstrap(settings(fresh_nats.url, ALBATROSS_ADMIN_PASSWORD="a chosen password"),
                        out=out, hasher=hasher)
        assert out.getvalue() == ""
        assert await login(fresh_nats.url, EMAIL, "a chosen password", hasher) is False
    finally:
        hasher.close()


async def test_bootstrap_applies_the_migrations(fresh_nats: NatsServer,
                                                database_url: str) -> None:
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
    try:
        await bootstrap(settings(fresh_nats.url, ALBATROSS_DATABASE_URL=database_url,
                                 ALBATROSS_ADMIN_PASSWORD="a chosen password"),
                        out=io.StringIO(), hasher=hasher)
    finally:
        hasher.close()
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch("SELECT table_schema FROM information_schema.tables "
                                        "WHERE table_schema = 'read_model'")
        assert tables
    finally:
        await connection.close()


def test_a_sigterm_stops_it_with_exit_0() -> None:
    """A NATS that takes connections and never answers: bootstrap is still waiting when a
    stop comes (a Job deleted, compose down)."""
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        env = {**os.environ, "ALBATROSS_NATS_URL": f"nats://127.0.0.1:{port}",
               "ALBATROSS_DATABASE_URL": ""}
        process = subprocess.Popen([sys.executable, "-m", "albatross.services.bootstrap.main"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            time.sleep(1.5)  # started, and waiting for NATS
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    finally:
        silent.close()
    assert process.returncode == 0, err


def test_an_unreachable_nats_exits_non_zero_with_one_clear_line() -> None:
    env = {**os.environ, "ALBATROSS_NATS_URL": "nats://bootstrap:S3cretNatsPw@127.0.0.1:9",
           "ALBATROSS_DATABASE_URL": ""}
    done = subprocess.run([sys.executable, "-m", "albatross.services.bootstrap.main"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "NATS at nats://bootstrap:***@127.0.0.1:9" in lines[0]
    assert "S3cretNatsPw" not in done.stderr + done.stdout  # the URL's password
    assert "Traceback" not in done.stderr
