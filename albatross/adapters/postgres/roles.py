"""The read-only role as a login role: a gateway that logs in as it can never become the owner.

Migration 0002 creates ``albatross_reader`` NOLOGIN; by default the gateway logs in as the
owner and switches to it when each connection starts. :func:`enable_reader_login` (run by
bootstrap when ``ALBATROSS_DATABASE_READER_PASSWORD`` is set) lets it log in directly, so a
gateway given ``postgresql://albatross_reader:...`` has no way back to the owner's rights.

The password is sent as a SCRAM-SHA-256 verifier computed here, never in clear: the server
never sees it, and a statement log cannot show it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from albatross.adapters.postgres.migrations import READER_ROLE
from albatross.adapters.postgres.pool import connect

SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


def scram_verifier(password: str, *, salt: bytes | None = None,
                   iterations: int = SCRAM_ITERATIONS) -> str:
    """The verifier PostgreSQL stores for ``password`` (RFC 5802/7677, PostgreSQL's layout).

    Only printable ASCII passwords are accepted (the setting's parser checks it): SASLprep
    leaves them unchanged, so the client's proof matches this verifier.
    """
    if not password.isascii() or not password.isprintable():
        raise ValueError("the password must be printable ASCII")
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}$"
            f"{b64(stored_key).decode()}:{b64(server_key).decode()}")


async def enable_reader_login(dsn: str, password: str) -> None:
    """Let :data:`READER_ROLE` log in with ``password`` (idempotent; the role must exist)."""
    verifier = scram_verifier(password)
    # ALTER ROLE takes no parameters; the verifier's alphabet cannot close the literal.
    if not _VERIFIER.match(verifier):
        raise ValueError("unexpected SCRAM verifier")
    connection = await connect(dsn, application_name="albatross-bootstrap")
    try:
        await connection.execute(f"ALTER ROLE {READER_ROLE} LOGIN PASSWORD '{verifier}'")
        # The gateway pod's init container checks, with the gateway's login, that this
        # image's migrations are applied (deploy/k8s/base/wait_for_bootstrap.py).
        await connection.execute(f"GRANT SELECT ON public.schema_migrations TO {READER_ROLE}")
    finally:
        await connection.close()
