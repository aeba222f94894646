"""The password hasher: hashes run in low-priority threads so logins never starve requests."""

from __future__ import annotations

import os
import threading

from albatross.adapters.passwords import (
    HASHING_NICENESS,
    TEST_ONLY_CHEAP,
    Argon2PasswordHasher,
)


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_hashes_run_in_threads_with_lowered_priority() -> None:
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
    try:
        hashing_thread = await hasher._run(_own_niceness)
        assert hashing_thread == min(19, _own_niceness() + HASHING_NICENESS)
        assert await hasher.verify(await hasher.hash("a password"), "a password")
    finally:
        hasher.close()


async def test_the_event_loop_thread_keeps_its_priority() -> None:
    before = _own_niceness()
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP, niceness=5)
    try:
        assert await hasher._run(_own_niceness) == min(19, before + 5)
        assert _own_niceness() == before
    finally:
        hasher.close()
