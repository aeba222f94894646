"""Real clock and id generator."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidV7Ids:
    """RFC 9562 UUIDv7: time-ordered, so ids sort roughly by creation and index well."""

    def new_id(self) -> str:
        millis = time.time_ns() // 1_000_000
        rand = int.from_bytes(os.urandom(10), "big")
        value = (millis & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76
        value |= ((rand >> 62) & 0xFFF) << 64
        value |= 0b10 << 62
        value |= rand & ((1 << 62) - 1)
        # Formatted by hand: building a uuid.UUID costs more than the id itself.
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
