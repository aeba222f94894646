"""Direct Get: read one stored message by sequence or as the last on a subject.

A direct get is answered by any replica without a consumer, so its cost does not grow with the
stream's size; this is what keeps aggregate loads flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from albatross.adapters.jetstream.requests import Requests

_NOT_FOUND = "404"


@dataclass(frozen=True)
class StoredMessage:
    sequence: int
    subject: str
    headers: dict[str, str]
    data: bytes


class DirectGetError(Exception):
    pass


class DirectGet:
    """Reads through its owner's ``Requests`` (one reply subscription; see requests.py)."""

    def __init__(self, requests: Requests, stream: str, timeout: float = 2.0) -> None:
        self._requests = requests
        self._api = f"$JS.API.DIRECT.GET.{stream}"
        self._timeout = timeout
        self._encode = msgspec.json.encode

    async def by_sequence(self, sequence: int) -> StoredMessage | None:
        return await self._get({"seq": sequence})

    async def last_on(self, subject: str) -> StoredMessage | None:
        """The last message on ``subject``, which may be a wildcard filter."""
        return await self._get({"last_by_subj": subject})

    async def _get(self, request: dict[str, object]) -> StoredMessage | None:
        reply = await self._requests.request(self._api, self._encode(request),
                                             timeout=self._timeout)
        headers = {str(k): v for k, v in (reply.headers or {}).items()}
        status = headers.get("Status")
        if status == _NOT_FOUND:
            return None
        if status is not None:
            raise DirectGetError(f"direct get failed: {status} {headers.get('Description', '')}")
        return StoredMessage(sequence=int(headers["Nats-Sequence"]),
                             subject=headers["Nats-Subject"], headers=headers, data=reply.data)
