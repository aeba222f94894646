"""The request path's own PUB/HPUB frames: byte for byte what nats-py would write, or none."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.client import _validate_subject
from nats.errors import Error as NatsError

from albatross.adapters.jetstream.requests import publish_frame


async def _nats_py_frame(subject: str, reply: str, data: bytes,
                         headers: dict[str, str] | None) -> bytes:
    _validate_subject(subject)  # what nats-py's publish checks before framing
    _validate_subject(reply)
    nc = NATS()  # never connected: the frame stays in its buffer
    await nc._send_publish(subject, reply, data, len(data), headers)
    assert len(nc._pending) == 1
    return bytes(nc._pending[0])


@pytest.mark.parametrize(("subject", "headers", "data"), [
    ("albatross.events.t1.pirep.0197", {"Albatross-Event-Type": "PirepSubmitted",
                                        "Nats-Msg-Id": "ab12:0", "Albatross-Prev-Seq": "0",
                                        "Nats-Expected-Last-Subject-Sequence": "0",
                                        "Nats-Expected-Last-Subject-Sequence-Subject":
                                            "albatross.*.t1.pirep.0197"},
     b'{"flight": "ALB123"}'),
    ("$JS.API.DIRECT.GET.EVENTS", None, b'{"last_by_subj": "a.b"}'),
    ("a", {}, b""),
    ("a.b", {"K": ""}, b"x" * 70_000),
    ("a.b", {"Value-With-Spaces": "one two  three"}, b"\r\n"),
    ("a.b", {"K": "x", "L": "~!"}, b"."),
    ("a.b", {"K": "tab\tinside", "Odd!#$%&'*+-.^_`|~Name": "50%s %d"}, b"{}"),
    ("a.b", {"K": "a:  b"}, b""),
])
async def test_a_plain_request_is_framed_as_nats_py_frames_it(
        subject: str, headers: dict[str, str] | None, data: bytes) -> None:
    frame = publish_frame(subject, "_INBOX.abc.17", data, headers)
    assert frame == await _nats_py_frame(subject, "_INBOX.abc.17", data, headers)


@pytest.mark.parametrize(("subject", "headers"), [
    ("a b", None),
    ("a.\u00e9", None),
    ("", None),
    ("a\tb", None),
    ("a", {"Bad:Name": "v"}),
    ("a", {"Name With Space": "v"}),
    ("a", {"Name(comment)": "v"}),
    ("a", {"": "v"}),
    ("a", {"K": "line\r\nInjected: yes"}),
    ("a", {"K": "line\nInjected: yes"}),
    ("a", {"K": "line\rInjected: yes"}),
    ("a", {"Name: with": "colon"}),
    ("a", {"K": "v", "Injected: yes\r\nL": "w"}),
    ("a", {"K": " padded "}),
    ("a", {"K": "padded "}),
    ("a", {"K": " padded"}),
    ("a", {"K": " "}),
    ("a", {"K": "\ttab padded"}),
    ("a", {"K": "v", "L": "x\t"}),
    ("a", {"K": "caf\u00e9"}),
])
def test_anything_unusual_is_left_to_nats_py(subject: str,
                                             headers: dict[str, str] | None) -> None:
    assert publish_frame(subject, "_INBOX.abc.1", b"data", headers) is None


def test_an_unusual_reply_subject_is_left_to_nats_py() -> None:
    assert publish_frame("a", "_INBOX abc", b"", None) is None


_NASTY = st.text(alphabet=st.sampled_from(list("aZ09.:-_ \t\r\n%{}\u00e9()!")), max_size=8)


@settings(max_examples=300, deadline=None)
@given(subject=_NASTY, headers=st.none() | st.dictionaries(_NASTY, _NASTY, max_size=4),
       data=st.binary(max_size=16))
async def test_any_frame_it_builds_is_the_one_nats_py_builds(
        subject: str, headers: dict[str, str] | None, data: bytes) -> None:
    frame = publish_frame(subject, "_INBOX.abc.3", data, headers)
    try:
        expected = await _nats_py_frame(subject, "_INBOX.abc.3", data, headers)
    except NatsError:  # nats-py refuses it (a bad subject or header name): so must this path
        assert frame is None
        return
    assert frame is None or frame == expected
