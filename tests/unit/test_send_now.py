"""send_now hands nats-py's buffer to the socket, and leaves it alone when it cannot."""

from __future__ import annotations

from typing import Any, cast

from nats.aio.client import Client as NATS

from albatross.adapters.jetstream.requests import send_now


class _Transport:
    def __init__(self, error: Exception | None = None) -> None:
        self.written: list[bytes] = []
        self._error = error

    def writelines(self, data: list[bytes]) -> None:
        if self._error is not None:
            raise self._error
        self.written.extend(data)


class _Client:
    """The three attributes of nats-py's client that send_now uses."""

    def __init__(self, transport: _Transport, *, connected: bool = True) -> None:
        self._transport = transport
        self._pending = [b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"]
        self._pending_data_size = sum(len(p) for p in self._pending)
        self.is_connected = connected


def client(transport: _Transport, *, connected: bool = True) -> tuple[_Client, NATS]:
    fake = _Client(transport, connected=connected)
    return fake, cast(NATS, cast(Any, fake))


def test_the_buffer_goes_to_the_transport_in_order_and_is_emptied() -> None:
    transport = _Transport()
    fake, nc = client(transport)
    send_now(nc)
    assert transport.written == [b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"]
    assert fake._pending == []
    assert fake._pending_data_size == 0


def test_nothing_is_written_between_connections() -> None:
    # nats-py keeps the buffer through a reconnection and sends it afterwards itself.
    transport = _Transport()
    fake, nc = client(transport, connected=False)
    send_now(nc)
    assert transport.written == []
    assert len(fake._pending) == 2


def test_a_transport_closed_under_the_client_leaves_the_buffer_to_the_flusher() -> None:
    for error in (RuntimeError("unable to perform operation; the handler is closed"),
                  ConnectionResetError()):
        fake, nc = client(_Transport(error))
        size = fake._pending_data_size
        send_now(nc)  # does not raise: the request goes unanswered like any lost one
        assert len(fake._pending) == 2
        assert fake._pending_data_size == size
