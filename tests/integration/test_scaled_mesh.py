"""Issue 7, "prove it": the mesh scaled out on a 3-node NATS cluster with R3 streams.

Two gateways, two projectors and two notifiers run as separate processes against one
nats-server cluster and one PostgreSQL. A full contract flow alternates between the
gateways (read-your-writes across replicas through ``Albatross-Min-Sequence``), a tenant
admin's socket on *each* notifier sees the PIREP's changes, exactly one projector applies
(one copy of each change in ALBATROSS_CHANGES), and every process exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from albatross.infra._process import free_ports, log_tail
from albatross.infra.nats_server import NatsCluster
from albatross.infra.postgres_server import PostgresServer
from tests.faults.processes import Service, spawn, wait_ready
from tests.integration.test_notifier_support import Client, connect

pytestmark = [pytest.mark.real, pytest.mark.slow]

ADMIN = "mesh-admin@albatross.test"
ADMIN_PASSWORD = "a mesh admin password"
PASSWORD = "a pilot's long password"
STOP_TIMEOUT = 10.0


async def call(http: aiohttp.ClientSession, gateway: Service, method: str, path: str,
               token: str | None = None, *, json: Any = None,
               min_sequence: int | None = None) -> tuple[int, Any, int | None]:
    """(status, JSON body, Albatross-Sequence) of one request to ``gateway``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if min_sequence is not None:
        headers["Albatross-Min-Sequence"] = str(min_sequence)
    async with http.request(method, f"{gateway.base}{path}", json=json,
                            headers=headers) as response:
        body = await response.json(content_type=None) if response.content_length != 0 else None
        sequence = response.headers.get("Albatross-Sequence")
        return response.status, body, int(sequence) if sequence is not None else None


async def metric(http: aiohttp.ClientSession, service: Service, name: str) -> float:
    async with http.get(f"{service.base}/metrics") as response:
        text = await response.text()
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.startswith(name + " ") or line.startswith(name + "{")]
    assert len(values) == 1, f"{service.name}: {name} appears {len(values)} times"
    return values[0]


def pirep_changes(changes: list[dict[str, Any]], pirep_id: str) -> list[str]:
    return [c["event"] for c in changes if c["entity"] == "pirep" and c["id"] == pirep_id]


async def stored_changes(nc: nats.NATS, subject: str) -> list[dict[str, Any]]:
    """Every message on ``subject`` in ALBATROSS_CHANGES, oldest first."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream="ALBATROSS_CHANGES")
    try:
        messages: list[dict[str, Any]] = []
        while True:
            try:
                batch = await sub.fetch(50, timeout=1.0)
            except nats.errors.TimeoutError:
                return messages
            for msg in batch:
                messages.append(json.loads(msg.data))
                await msg.ack()
    finally:
        await sub.unsubscribe()


async def test_two_of_each_service_on_a_three_node_cluster_with_r3_streams(
        nats_cluster: NatsCluster, postgres_tmp_path: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    postgres = PostgresServer(postgres_tmp_path / "data")
    await postgres.start()
    services: list[Service] = []

    def tails() -> str:
        parts = [s.tail() for s in services]
        parts += [f"--- nats {n.server_name} ---\n{log_tail(n.log_path, 10)}"
                  for n in nats_cluster.servers]
        parts.append(f"--- postgres ---\n{log_tail(postgres.log_path, 10)}")
        return "\n".join(parts)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALBATROSS_")}
    env.update({
        "ALBATROSS_NATS_URL": ",".join(nats_cluster.urls),
        "ALBATROSS_DATABASE_URL": postgres.dsn,
        "ALBATROSS_STREAM_REPLICAS": "3",
        "ALBATROSS_HTTP_HOST": "127.0.0.1",
        "ALBATROSS_ADMIN_EMAIL": ADMIN,
        "ALBATROSS_ADMIN_PASSWORD": ADMIN_PASSWORD,
    })
    sockets: list[Client] = []
    try:
        try:
            bootstrap = spawn("bootstrap", "albatross.services.bootstrap.main", env, logs)
            services.append(bootstrap)
            code = await asyncio.to_thread(bootstrap.popen.wait, 90)
            assert code == 0, f"bootstrap exited {code}"
            services.remove(bootstrap)
            ports = free_ports(6)
            layout = [("gateway", "ALBATROSS_HTTP_PORT"), ("projector", "ALBATROSS_PROJECTOR_PORT"),
                      ("notifier", "ALBATROSS_NOTIFIER_PORT")]
            for index, (kind, port_var) in enumerate(layout):
                for replica in "ab":
                    services.append(spawn(f"{kind}-{replica}", f"albatross.services.{kind}.main",
                                          env, logs, port_var,
                                          ports[2 * index + (replica == "b")]))
            gw_a, gw_b, proj_a, proj_b, ntf_a, ntf_b = services
            async with aiohttp.ClientSession() as http:
                await asyncio.gather(*(wait_ready(http, s) for s in services))
                await flow(http, nats_cluster, (gw_a, gw_b), (proj_a, proj_b),
                           (ntf_a, ntf_b), sockets)
            for client in sockets:
                await client.close()
            sockets.clear()
            for service in services:
                service.popen.send_signal(signal.SIGTERM)
            started = time.monotonic()
            codes = await asyncio.gather(*(asyncio.to_thread(_wait, s.popen, STOP_TIMEOUT)
                                           for s in services))
            elapsed = time.monotonic() - started
            assert dict(zip([s.name for s in services], codes, strict=True)) == {
                s.name: 0 for s in services}, f"exit codes after SIGTERM ({elapsed:.1f} s)"
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}\n\n{tails()}") from exc
    finally:
        for client in sockets:
            await client.close()
        for service in services:
            if service.popen.poll() is None:
                service.popen.kill()
                service.popen.wait(10)
        await postgres.stop()


def _wait(popen: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return popen.wait(timeout)
    except subprocess.TimeoutExpired:
        return None  # still running after ``timeout``: the finally block kills it


async def flow(http: aiohttp.ClientSession, cluster: NatsCluster,
               gateways: tuple[Service, Service], projectors: tuple[Service, Service],
               notifiers: tuple[Service, Service], sockets: list[Client]) -> None:
    gw_a, gw_b = gateways

    # The streams really are replicated three ways.
    nc = await nats.connect(cluster.urls, connect_timeout=5)
    try:
        js = nc.jetstream()
        for stream in ("ALBATROSS_EVENTS", "ALBATROSS_CHANGES"):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, (stream, info.config.num_replicas)
            assert info.cluster is not None, stream
            assert info.cluster.leader, (stream, info.cluster)
            assert len(info.cluster.replicas or []) == 2, (stream, info.cluster)

        status, body, _ = await call(http, gw_a, "POST", "/api/auth/login",
                                     json={"email": ADMIN, "password": ADMIN_PASSWORD})
        assert status == 200, body
        admin = body["token"]

        icao = "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])
        status, tenant, _ = await call(http, gw_b, "POST", "/api/tenants", admin,
                                       json={"name": "Mesh Air", "icao": icao})
        assert status == 201, tenant

        suffix = uuid.uuid4().hex[:8]
        pilot_email, ta_email = f"pilot-{suffix}@example.com", f"chief-{suffix}@example.com"
        for email, role in ((pilot_email, "Pilot"), (ta_email, "TenantAdmin")):
            status, body, _ = await call(http, gw_a, "POST", "/api/users", admin, json={
                "email": email, "display_name": role, "password": PASSWORD, "role": role,
                "tenant_id": tenant["id"]})
            assert status == 201, (role, body)

        status, body, _ = await call(http, gw_b, "POST", "/api/auth/login",
                                     json={"email": pilot_email, "password": PASSWORD})
        assert status == 200, body
        pilot, pilot_id = body["token"], body["user"]["id"]
        status, body, _ = await call(http, gw_a, "POST", "/api/auth/login",
                                     json={"email": ta_email, "password": PASSWORD})
        assert status == 200, body
        chief = body["token"]

        # The tenant admin listens on each notifier replica, on its own port.
        for notifier in notifiers:
            sockets.append(await connect(f"{notifier.base}/api/ws", chief))

        status, pirep, submitted_seq = await call(http, gw_a, "POST", "/api/pireps", pilot, json={
            "flight_number": "MSH7", "departure": "EGLL", "arrival": "LFPG",
            "block_off_at": "2026-01-01T10:00:00Z", "block_on_at": "2026-01-01T11:10:00Z",
            "flight_time_minutes": 60})
        assert status == 201, pirep
        assert submitted_seq is not None
        assert submitted_seq > 0
        pirep_id = pirep["id"]

        status, seen, _ = await call(http, gw_b, "GET", f"/api/pireps/{pirep_id}", pilot,
                                     min_sequence=submitted_seq)
        assert status == 200, seen
        assert (seen["status"], seen["pilot_id"]) == ("pending", pilot_id), seen

        status, reviewed, accepted_seq = await call(
            http, gw_b, "POST", f"/api/pireps/{pirep_id}/review", chief,
            json={"decision": "accept"})
        assert status == 200, reviewed
        assert reviewed["status"] == "accepted", reviewed
        assert accepted_seq is not None
        assert accepted_seq > submitted_seq

        status, me, _ = await call(http, gw_a, "GET", "/api/me", pilot, min_sequence=accepted_seq)
        assert status == 200, me
        assert (me["id"], me["flight_count"], me["flight_minutes"]) == (pilot_id, 1, 60), me
        status, seen, _ = await call(http, gw_a, "GET", f"/api/pireps/{pirep_id}", pilot,
                                     min_sequence=accepted_seq)
        assert status == 200, seen
        assert seen["status"] == "accepted", seen

        # Both notifier replicas deliver both changes of the PIREP, each once, in order.
        def both(changes: list[dict[str, Any]]) -> bool:
            return len(pirep_changes(changes, pirep_id)) >= 2

        received = await asyncio.gather(*(s.changes_until(both, timeout=15) for s in sockets))
        extra = await asyncio.gather(*(s.quiet(0.5) for s in sockets))
        for notifier, changes, late in zip(notifiers, received, extra, strict=True):
            assert pirep_changes(changes + late, pirep_id) == ["PirepSubmitted", "PirepAccepted"], (
                notifier.name, changes, late)
            sequences = [c["sequence"] for c in changes + late if c.get("type") == "change"]
            assert sequences == sorted(set(sequences)), (notifier.name, sequences)
            final = [c for c in changes if c["id"] == pirep_id][-1]
            assert final["data"]["status"] == "accepted", (notifier.name, final)

        # One applier: one copy of each change in the changes stream, one leader among two.
        stored = await stored_changes(
            nc, f"albatross.changes.{tenant['id']}.pirep.{pirep_id}")
        pairs = Counter((m["id"], m["event"]) for m in stored)
        assert pairs == {(pirep_id, "PirepSubmitted"): 1, (pirep_id, "PirepAccepted"): 1}, pairs
        leaders = sorted([await metric(http, p, "albatross_projector_leader")
                          for p in projectors])
        assert leaders == [0.0, 1.0], leaders
    finally:
        await nc.close()
