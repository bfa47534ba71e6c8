"""Password hashing: PBKDF2-HMAC-SHA256 with a per-user random salt (Part 11 §11.300).

Stored format: ``pbkdf2_sha256$<iterations>$<salt_b64>$<hash_b64>`` (standard base64).
Only hashes are ever stored; :func:`verify_password` compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000
"""OWASP Password Storage Cheat Sheet (2023) figure for PBKDF2-HMAC-SHA256."""
MIN_ITERATIONS = 200_000
"""Floor accepted in ``config/users.yaml`` (project requirement)."""
SALT_BYTES = 16
HASH_RE = re.compile(r"^pbkdf2_sha256\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """Hash ``password`` for ``config/users.yaml``.

    Raises:
        ValueError: empty password or fewer than :data:`MIN_ITERATIONS` iterations.
    """
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string")
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"at least {MIN_ITERATIONS} PBKDF2 iterations are required, got {iterations}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) < 16:
        raise ValueError("salt must be at least 16 bytes")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a stored hash.

    Raises:
        ValueError: not in the ``pbkdf2_sha256$iterations$salt$hash`` format.
    """
    m = HASH_RE.match(stored or "")
    if not m:
        raise ValueError(
            "password_hash must look like pbkdf2_sha256$<iterations>$<salt_b64>$<hash_b64> "
            "(store hashes only; make one with `python -m aseptic_cell.auth hash`)"
        )
    try:
        salt = base64.b64decode(m.group(2), validate=True)
        digest = base64.b64decode(m.group(3), validate=True)
    except ValueError as exc:
        raise ValueError(f"password_hash has invalid base64: {exc}") from exc
    if len(salt) < 16 or len(digest) != 32:
        raise ValueError("password_hash needs a salt of >= 16 bytes and a 32-byte SHA-256 digest")
    return int(m.group(1)), salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare of the digests)."""
    iterations, salt, digest = parse_hash(stored)
    if not isinstance(password, str):
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest)
