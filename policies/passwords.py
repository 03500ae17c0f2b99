"""PostgreSQL SCRAM-SHA-256 verifiers and bearer token digests for the `users:` section.

Owns only verifier and token creation and checking (`maskgate passwd`, `maskgate token`), with
hashlib/hmac/secrets (RFC 5802/7677 as PostgreSQL stores them). Authentication exchanges on the
wire belong to proxy/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable

ITERATIONS = 4096


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all base64."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    keys = f"{b64(stored_key).decode()}:{b64(server_key).decode()}"
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${keys}"


def verify_password(password: str, verifier: str) -> bool:
    """Whether `password` produces `verifier` (used by tests and `maskgate check`)."""
    try:
        head, _keys = verifier.split("$", 2)[1:]
        iterations_s, salt_b64 = head.split(":")
        salt = base64.b64decode(salt_b64)
        expected = scram_verifier(password, salt, int(iterations_s))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, verifier)


TOKEN_PREFIX = "mgt_"


def new_token() -> str:
    """A fresh bearer token: 256 random bits, prefixed so that secret scanners can spot one."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The lower-case hex SHA-256 of a bearer token, as `User.tokens` holds it (a token is
    random, so one unsalted hash suffices: there is nothing to guess from it)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, digests: Iterable[str]) -> bool:
    """Whether `token` is one of `digests`, comparing every one in constant time."""
    mine = token_digest(token)
    found = False
    for digest in digests:
        found |= hmac.compare_digest(mine, digest)
    return found
