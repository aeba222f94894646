"""The password hasher: hashes run in low-priority threads so logins never starve requests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from albatross.adapters.passwords import (
    HASHING_NICENESS,
    TEST_ONLY_CHEAP,
    Argon2PasswordHasher,
    MachineSlots,
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


class _Overlap:
    """Counts how many calls run at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, *_args: str) -> str:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.1)
        with self._lock:
            self.now -= 1
        return "done"


@pytest.mark.parametrize("count", [1, 2])
def test_machine_slots_bound_holders_across_separate_users_of_a_directory(
        tmp_path: Path, count: int) -> None:
    overlap = _Overlap()
    # A MachineSlots each, as separate processes would have: only the directory is shared.
    users = [MachineSlots(tmp_path, count) for _ in range(4)]
    threads = [threading.Thread(target=user.run, args=(overlap,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert overlap.most == count


def test_machine_slots_wait_for_a_slot_another_process_holds(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            with open({str(tmp_path / "slot-0.lock")!r}, "a") as slot:
                fcntl.flock(slot, fcntl.LOCK_EX)
                print("held", flush=True)
                time.sleep(0.8)
        """)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        started = time.monotonic()
        assert MachineSlots(tmp_path, 1).run(lambda: "mine") == "mine"
        assert time.monotonic() - started >= 0.5
    finally:
        holder.wait(timeout=5)


async def test_a_hasher_with_shared_slots_hashes_inside_one(tmp_path: Path) -> None:
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP, shared_slots=tmp_path)
    try:
        assert await hasher.verify(await hasher.hash("a password"), "a password")
        assert sorted(p.name for p in tmp_path.iterdir())[0] == "slot-0.lock"
    finally:
        hasher.close()
