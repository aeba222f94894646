"""Real clock and id generator."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_MILLIS_MASK = (1 << 48) - 1


class UuidV7Ids:
    """RFC 9562 UUIDv7: time-ordered, so ids sort roughly by creation and index well."""

    def new_id(self) -> str:
        rand = os.urandom(10)
        # 48 bits of Unix milliseconds, then the random bits with the version (7) in the high
        # nibble of byte 6 and the variant (0b10) in the top bits of byte 8. Formatted by hand:
        # building a uuid.UUID costs more than the id itself.
        millis = (time.time_ns() // 1_000_000) & _MILLIS_MASK
        h = (millis.to_bytes(6, "big")
             + bytes((0x70 | (rand[0] & 0x0F), rand[1], 0x80 | (rand[2] & 0x3F)))
             + rand[3:]).hex()
        return "-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))
