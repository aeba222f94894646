"""Request/reply on one reply subscription: each caller gets its own answer, in time or not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from albatross.adapters.jetstream.requests import NotConnected, Requests

pytestmark = pytest.mark.real


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


async def test_concurrent_requests_each_get_their_own_reply(nc: NATS) -> None:
    async def echo(msg: Msg) -> None:
        await asyncio.sleep(0.001 * (int(msg.data) % 7))  # replies come back out of order
        await nc.publish(msg.reply, msg.data + b"!", headers={"Seen": msg.headers["N"]})

    await nc.subscribe("requests.echo", cb=echo)
    requests = Requests(nc)
    try:
        replies = await asyncio.gather(*(
            requests.request("requests.echo", str(n).encode(), timeout=5, headers={"N": str(n)})
            for n in range(200)))
    finally:
        await requests.close()
    assert [r.data for r in replies] == [f"{n}!".encode() for n in range(200)]
    assert [r.headers["Seen"] for r in replies] == [str(n) for n in range(200)]


async def test_no_reply_in_time_is_a_timeout_and_a_late_one_is_dropped(nc: NATS) -> None:
    release = asyncio.Event()

    async def slow(msg: Msg) -> None:
        await release.wait()
        await nc.publish(msg.reply, b"late")

    await nc.subscribe("requests.slow", cb=slow)
    requests = Requests(nc)
    try:
        with pytest.raises(NatsTimeoutError):
            await requests.request("requests.slow", b"", timeout=0.2)
        release.set()
        await asyncio.sleep(0.1)

        async def fast(msg: Msg) -> None:
            await nc.publish(msg.reply, b"fresh")

        await nc.subscribe("requests.fast", cb=fast)
        assert (await requests.request("requests.fast", b"", timeout=5)).data == b"fresh"
    finally:
        await requests.close()


async def test_a_subject_nobody_serves_is_no_responders(nc: NATS) -> None:
    requests = Requests(nc)
    try:
        with pytest.raises(NoRespondersError):
            await requests.request("requests.nobody", b"", timeout=5)
    finally:
        await requests.close()


async def test_a_client_without_a_connection_sends_nothing(nats_url: str) -> None:
    # nats-py would buffer the request and send it once connected again, after the caller
    # gave up on it (tests/integration/test_event_store_faults.py has the reconnection case).
    client = await nats.connect(nats_url)
    requests = Requests(client)
    with pytest.raises(NoRespondersError):  # opens the reply subscription while connected
        await requests.request("requests.nobody", b"", timeout=5)
    await client.close()
    with pytest.raises(NotConnected):
        await requests.request("requests.nobody", b"lost", timeout=5)
    assert client.pending_data_size == 0


async def test_a_request_is_written_at_once_not_by_the_next_flush(nc: NATS) -> None:
    # nats-py writes buffered publishes from a flusher task that runs only after everything
    # else ready on the event loop; a busy gateway would hold every append back that long.
    async def echo(msg: Msg) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe("requests.now", cb=echo)
    requests = Requests(nc)
    try:
        assert (await requests.request("requests.now", b"warm", timeout=5)).data == b"warm"
        await nc.flush()
        pending = requests.request("requests.now", b"at once", timeout=5)
        # Run the request up to its wait for the reply, with no other task running meanwhile.
        with contextlib.suppress(StopIteration):
            pending.send(None)
        assert nc.pending_data_size == 0
        pending.close()
    finally:
        await requests.close()


async def test_what_the_lean_frame_leaves_out_goes_through_nats_py(nc: NATS) -> None:
    async def echo(msg: Msg) -> None:
        await nc.publish(msg.reply, msg.data, headers={"Seen": msg.headers["Name"]})

    await nc.subscribe("requests.unusual", cb=echo)
    requests = Requests(nc)
    try:
        reply = await requests.request("requests.unusual", b"x", timeout=5,
                                       headers={"Name": "Zo\u00eb"})
        assert reply.headers is not None
        assert reply.headers["Seen"] == "Zo\u00eb"
        with pytest.raises(MaxPayloadError):
            await requests.request("requests.unusual", b"x" * (nc.max_payload + 1), timeout=5)
    finally:
        await requests.close()
