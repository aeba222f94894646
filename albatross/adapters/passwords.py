"""Password hashing with argon2id, off the event loop and with bounded concurrency.

Parameters: argon2id, time cost 3, memory 64 MiB, parallelism 4 (RFC 9106's second
recommended option, argon2-cffi's default profile). That is above every OWASP minimum
(e.g. m=19 MiB/t=2/p=1 or m=46 MiB/t=1/p=1). One hash costs 135-230 ms of CPU on our 2-core
machines, so hashes run in a thread pool (cffi releases the GIL) behind a semaphore: a burst
of logins queues for the hasher instead of starving the event loop or exhausting memory (each
hash holds 64 MiB while it runs).

Processes that share a machine (``albatross up``'s gateway processes) share the bound too:
given a directory of *slots*, a hash runs only while its thread holds an exclusive ``flock`` on
one of that directory's lock files, so at most one hash per two CPUs runs machine-wide rather
than that many per process.

Each hash computes its lanes on one thread (``argon2_one_core``), so it occupies one core, never
both; the hashing threads also run at a lower CPU priority (Linux niceness is per thread).
Logins then take the CPU that requests leave idle, so a burst of logins slows logins, not the
API.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from albatross.adapters import argon2_one_core

T = TypeVar("T")


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost_kib: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16


# The production parameters; a unit test asserts they stay at or above OWASP's minimum.
PRODUCTION = Argon2Params(time_cost=3, memory_cost_kib=64 * 1024, parallelism=4)
# Only for tests: orders of magnitude cheaper, never used by a process's main().
TEST_ONLY_CHEAP = Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1)


# Niceness added to the hashing threads': 19 weighs 15 against a normal thread's 1024 in Linux's
# scheduler, so hashes get next to nothing of a contended core and all of an idle one. (10,
# weight 110, let 16 concurrent logins on two gateway processes push `/api/me`'s p99 to 4-6x
# its idle p99; 19 keeps it near 2-3x, and logins completed no slower in that run.)
HASHING_NICENESS = 19


def _lower_thread_priority(niceness: int) -> None:
    # Raising one's own niceness needs no privilege; where it is unsupported hashing still works.
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))


def default_concurrency() -> int:
    # Each hash already uses ``parallelism`` lanes; one hash per two cores leaves CPU for
    # the event loop (the gateway must keep answering while logins run).
    return max(1, (os.cpu_count() or 2) // 2)


class MachineSlots:
    """At most ``count`` holders at once among every process using ``directory``."""

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._paths = [directory / f"slot-{n}.lock" for n in range(count)]

    def run(self, fn: Callable[..., T], *args: str) -> T:
        """``fn(*args)`` in a free slot; blocks the calling thread (never the event loop's)
        until one is free."""
        for path in self._paths:
            with path.open("a") as slot:
                try:
                    fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                return fn(*args)  # closing the file releases the lock
        with self._paths[threading.get_ident() % len(self._paths)].open("a") as slot:
            fcntl.flock(slot, fcntl.LOCK_EX)
            return fn(*args)


class Argon2PasswordHasher:
    """Implements :class:`albatross.application.auth_ports.PasswordHasher`."""

    def __init__(self, params: Argon2Params = PRODUCTION, *,
                 max_concurrency: int | None = None,
                 niceness: int = HASHING_NICENESS,
                 shared_slots: Path | None = None) -> None:
        self.params = params
        self._hasher = PasswordHasher(time_cost=params.time_cost,
                                      memory_cost=params.memory_cost_kib,
                                      parallelism=params.parallelism, hash_len=params.hash_len,
                                      salt_len=params.salt_len, type=Type.ID)
        workers = max_concurrency or default_concurrency()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2",
                                        initializer=_lower_thread_priority,
                                        initargs=(niceness,))
        self._slots = asyncio.Semaphore(workers)
        self._machine = (MachineSlots(shared_slots, default_concurrency())
                         if shared_slots is not None else None)
        # Made now, not at the first unknown email: that login would also pay for a hash.
        self._dummy = argon2_one_core.unmatchable_hash(
            time_cost=params.time_cost, memory_cost_kib=params.memory_cost_kib,
            parallelism=params.parallelism, hash_len=params.hash_len, salt_len=params.salt_len)

    async def hash(self, password: str) -> str:
        return await self._run(self._hash_sync, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify_sync, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification (for an unknown email: equal timing)."""
        await self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _hash_sync(self, password: str) -> str:
        p = self.params
        return argon2_one_core.hash_password(
            password, time_cost=p.time_cost, memory_cost_kib=p.memory_cost_kib,
            parallelism=p.parallelism, hash_len=p.hash_len, salt_len=p.salt_len)

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return argon2_one_core.verify_password(password_hash, password)
        except InvalidHashError:
            pass  # not argon2id with a version: argon2-cffi knows the other variants
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        async with self._slots:
            loop = asyncio.get_running_loop()
            if self._machine is not None:
                return await loop.run_in_executor(self._pool, self._machine.run, fn, *args)
            return await loop.run_in_executor(self._pool, fn, *args)
