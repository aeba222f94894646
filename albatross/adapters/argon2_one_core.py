"""argon2id hashes computed on one thread, whatever their parallelism.

An argon2 hash's *lanes* (its ``p``) are part of its definition; how many threads compute them
is not: libargon2 accepts fewer threads than lanes and gives the same bytes. argon2-cffi's
high-level API always starts one thread per lane, so a hash with ``p=4`` keeps both cores of a
two-core machine busy (~170 ms of wall time, ~265 ms of CPU on our development VM), and even at
niceness 19 those threads pushed the gateway's ``GET /api/me`` p99 to 3.2-3.9x its idle p99
while 16 logins ran; computed here on one thread, 1.2x (docs/performance.md, "Gateway"). One
thread spends less CPU on a hash (~220 ms: no lane synchronisation) but takes longer alone,
and leaves the other core to the API.

The encoded form is argon2-cffi's (PHC string format), so hashes from either side verify on
the other (tests/unit/test_argon2_one_core.py proves both directions). This uses argon2-cffi's
raw ``argon2_ctx`` binding, whose context layout follows the pinned version of the package;
the same tests fail if it changes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from typing import Any

from _argon2_cffi_bindings import ffi, lib
from argon2 import Type, extract_parameters
from argon2.exceptions import HashingError, InvalidHashError
from argon2.low_level import ARGON2_VERSION, core, error_to_str

_PREFIX = "$argon2id$"


def hash_password(password: str, *, time_cost: int, memory_cost_kib: int, parallelism: int,
                  hash_len: int, salt_len: int) -> str:
    """An encoded argon2id hash of ``password`` with a fresh random salt."""
    salt = os.urandom(salt_len)
    raw = _argon2id(password.encode(), salt, time_cost=time_cost,
                    memory_cost_kib=memory_cost_kib, parallelism=parallelism,
                    hash_len=hash_len, version=ARGON2_VERSION)
    if raw is None:
        raise HashingError("argon2id refused the parameters")
    return _encode(salt, raw, time_cost=time_cost, memory_cost_kib=memory_cost_kib,
                   parallelism=parallelism)


def unmatchable_hash(*, time_cost: int, memory_cost_kib: int, parallelism: int, hash_len: int,
                     salt_len: int) -> str:
    """An encoded argon2id hash with a random digest instead of a password's.

    Verifying a password against it costs exactly what a real hash with these parameters costs
    and fails (but for a chance of 2 ** -(8 * hash_len)); it costs nothing to make."""
    return _encode(os.urandom(salt_len), os.urandom(hash_len), time_cost=time_cost,
                   memory_cost_kib=memory_cost_kib, parallelism=parallelism)


def _encode(salt: bytes, raw: bytes, *, time_cost: int, memory_cost_kib: int,
            parallelism: int) -> str:
    return (f"{_PREFIX}v={ARGON2_VERSION}$m={memory_cost_kib},t={time_cost},p={parallelism}"
            f"${_b64(salt)}${_b64(raw)}")


def verify_password(encoded: str, password: str) -> bool:
    """Whether ``password`` matches an argon2id hash in argon2-cffi's encoding.

    Raises :class:`InvalidHashError` for anything else (another argon2 variant, a malformed
    string), so the caller can hand those to argon2-cffi or refuse them.
    """
    if not encoded.startswith(_PREFIX):
        raise InvalidHashError("not an argon2id hash")
    params = extract_parameters(encoded)
    parts = encoded.split("$")
    if len(parts) != 6:
        raise InvalidHashError("not an argon2id hash with a version")
    salt, expected = _unb64(parts[4]), _unb64(parts[5])
    raw = _argon2id(password.encode(), salt, time_cost=params.time_cost,
                    memory_cost_kib=params.memory_cost, parallelism=params.parallelism,
                    hash_len=len(expected), version=params.version)
    if raw is None:
        raise InvalidHashError("argon2id refused the hash's parameters")
    return hmac.compare_digest(raw, expected)


def _argon2id(password: bytes, salt: bytes, *, time_cost: int, memory_cost_kib: int,
              parallelism: int, hash_len: int, version: int) -> bytes | None:
    out = ffi.new("uint8_t[]", hash_len)
    pwd = ffi.new("uint8_t[]", password)
    salt_buffer = ffi.new("uint8_t[]", salt)
    fields: dict[str, Any] = {
        "out": out, "outlen": hash_len, "pwd": pwd, "pwdlen": len(password),
        "salt": salt_buffer, "saltlen": len(salt), "secret": ffi.NULL, "secretlen": 0,
        "ad": ffi.NULL, "adlen": 0, "t_cost": time_cost, "m_cost": memory_cost_kib,
        "lanes": parallelism, "threads": 1, "version": version,
        "allocate_cbk": ffi.NULL, "free_cbk": ffi.NULL, "flags": lib.ARGON2_DEFAULT_FLAGS,
    }
    context = ffi.new("argon2_context *", fields)
    status = core(context, Type.ID.value)
    if status == lib.ARGON2_MEMORY_ALLOCATION_ERROR:
        raise HashingError(error_to_str(status))
    if status != lib.ARGON2_OK:
        return None
    return bytes(ffi.buffer(out, hash_len))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidHashError("malformed base64 in the hash") from exc
