"""argon2id on one thread: the same hashes as argon2-cffi's, computed without lane threads."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable

import argon2
import pytest
from argon2.exceptions import InvalidHashError
from argon2.low_level import Type, hash_secret_raw

from albatross.adapters import argon2_one_core
from albatross.adapters.passwords import Argon2Params, Argon2PasswordHasher

# Four lanes, so that computing them on one thread is what is being tested; small enough to
# take milliseconds.
PARAMS = {"time_cost": 2, "memory_cost_kib": 512, "parallelism": 4, "hash_len": 32,
          "salt_len": 16}


def _ours(password: str) -> str:
    return argon2_one_core.hash_password(password, **PARAMS)


def _cffi() -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=2, memory_cost=512, parallelism=4, hash_len=32,
                                 salt_len=16, type=Type.ID)


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def test_our_hash_is_the_argon2id_of_its_salt_with_the_stated_parameters() -> None:
    encoded = _ours("correct horse")
    params = argon2.extract_parameters(encoded)
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism,
            params.hash_len, params.salt_len) == (Type.ID, 2, 512, 4, 32, 16)
    _, _, _, _, salt, digest = encoded.split("$")
    assert _unb64(digest) == hash_secret_raw(b"correct horse", _unb64(salt), time_cost=2,
                                             memory_cost=512, parallelism=4, hash_len=32,
                                             type=Type.ID)


def test_hashes_verify_across_argon2_cffi_and_ours() -> None:
    ours = _ours("correct horse")
    assert _cffi().verify(ours, "correct horse")
    theirs = _cffi().hash("battery staple")
    assert argon2_one_core.verify_password(theirs, "battery staple")
    assert not argon2_one_core.verify_password(theirs, "battery stapler")
    assert not argon2_one_core.verify_password(ours, "")


def test_an_unmatchable_hash_is_well_formed_with_the_stated_parameters_and_matches_nothing(
        ) -> None:
    encoded = argon2_one_core.unmatchable_hash(**PARAMS)
    params = argon2.extract_parameters(encoded)
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism,
            params.hash_len, params.salt_len) == (Type.ID, 2, 512, 4, 32, 16)
    # Well formed: both verifiers run it (a malformed one would raise, and take no time).
    assert not argon2_one_core.verify_password(encoded, "correct horse")
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        _cffi().verify(encoded, "correct horse")
    assert encoded != argon2_one_core.unmatchable_hash(**PARAMS)


def test_each_hash_has_its_own_salt() -> None:
    assert _ours("same") != _ours("same")


def test_a_password_beyond_ascii_round_trips() -> None:
    encoded = _ours("pässwörd ✈ 機長")
    assert argon2_one_core.verify_password(encoded, "pässwörd ✈ 機長")
    assert _cffi().verify(encoded, "pässwörd ✈ 機長")


@pytest.mark.parametrize("encoded", [
    "",
    "plain text",
    "$argon2i$v=19$m=512,t=2,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=512,t=2,p=4$c2FsdHNhbHRzYWx0",
    "$argon2id$v=19$m=512,t=2,p=4$not*base64$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=512,t=2,p=4$c2Fs$aGFzaGhhc2hoYXNoaGFzaA",  # a 3-byte salt
    "$argon2id$v=19$m=1,t=2,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",  # too little memory
])
def test_anything_but_a_well_formed_argon2id_hash_is_invalid(encoded: str) -> None:
    with pytest.raises(InvalidHashError):
        argon2_one_core.verify_password(encoded, "whatever")


async def test_the_hasher_verifies_other_argon2_variants_through_argon2_cffi() -> None:
    argon2i = argon2.PasswordHasher(time_cost=2, memory_cost=512, parallelism=2,
                                    type=Type.I).hash("old password")
    hasher = Argon2PasswordHasher(Argon2Params(time_cost=2, memory_cost_kib=512,
                                               parallelism=4))
    try:
        assert await hasher.verify(argon2i, "old password")
        assert not await hasher.verify(argon2i, "another")
        assert not await hasher.verify("not a hash", "old password")
        fresh = await hasher.hash("new password")
        assert await hasher.verify(fresh, "new password")
        assert not hasher.needs_rehash(fresh)  # argon2-cffi reads our parameters as its own
        assert hasher.needs_rehash(argon2i)
    finally:
        hasher.close()


def _most_threads_during(work: Callable[[], object]) -> int:
    """The most threads this process had while ``work`` ran in a thread of its own."""
    done = threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    worker = threading.Thread(target=run)
    most = 0
    worker.start()
    while not done.is_set():
        most = max(most, len(os.listdir("/proc/self/task")))
    worker.join()
    return most


def test_a_hash_starts_no_lane_threads() -> None:
    big = {**PARAMS, "memory_cost_kib": 32 * 1024}
    before = len(os.listdir("/proc/self/task"))
    # The probe sees libargon2's lane threads when argon2-cffi starts them...
    cffi = argon2.PasswordHasher(time_cost=2, memory_cost=32 * 1024, parallelism=4)
    assert max(_most_threads_during(lambda: cffi.hash("x")) for _ in range(3)) > before + 1
    # ...and none beside the calling thread when the lanes run on it.
    ours = max(_most_threads_during(lambda: argon2_one_core.hash_password("x", **big))
               for _ in range(3))
    assert ours <= before + 1
