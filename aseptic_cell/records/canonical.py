"""Canonical encodings and hashes used by the batch record.

One encoding is used everywhere a hash is taken, so that a verifier written later (or in
another language) can recompute it: UTF-8 JSON with sorted keys, no whitespace, no NaN or
infinity (``allow_nan=False``), non-ASCII characters kept as they are.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from typing import Any

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry of every record file."""

HASH_SCHEME = "aseptic_cell.record.v1"
"""Domain-separation prefix of the entry hash; bump it if the hashed fields ever change."""


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``.

    Raises:
        ValueError: if ``value`` contains NaN or +/-inf anywhere, or something JSON cannot
            represent (sets, bytes, arbitrary objects), or a non-string mapping key.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / inf
        raise ValueError(f"payload is not canonical JSON: {exc} (NaN and inf are not accepted)") from exc
    except TypeError as exc:
        raise ValueError(f"payload is not canonical JSON: {exc}") from exc


def content_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``: the hash an e-signature covers."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def iso_utc(ts: float) -> str:
    """ISO-8601 UTC text of an epoch-like time stamp, microsecond resolution."""
    if not math.isfinite(ts):
        raise ValueError(f"clock returned a non-finite time {ts!r}")
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC).isoformat(timespec="microseconds")


def entry_hash(
    seq: int,
    ts: float,
    ts_iso: str,
    batch_id: str,
    kind: str,
    actor: str,
    role: str,
    action: str,
    reason: str,
    payload_json: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of one entry's fields in the canonical encoding.

    The payload enters as its stored canonical text, so the hash does not depend on how a
    reader parses it back.
    """
    fields = [
        HASH_SCHEME,
        seq,
        ts,
        ts_iso,
        batch_id,
        kind,
        actor,
        role,
        action,
        reason,
        payload_json,
        prev_hash,
    ]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
