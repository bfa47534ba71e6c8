"""Batch record and audit trail (hash-chained, append-only SQLite; 21 CFR 11.10 [CFR11], Annex 11).

``cellctl record verify FILE`` calls :func:`verify_file`: exit 0 when ``report.ok``, else 1
with ``report.problem`` printed.
"""

from .canonical import GENESIS_HASH, canonical_json, content_hash, entry_hash, iso_utc
from .render import export_json, render_text, signature_manifest
from .store import (
    KINDS,
    POST_RELEASE_CORRECTION,
    BatchRecord,
    Entry,
    RecordClosedError,
    RecordError,
    RecordWriteError,
    VerifyReport,
    verify_file,
)

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "POST_RELEASE_CORRECTION",
    "BatchRecord",
    "Entry",
    "RecordClosedError",
    "RecordError",
    "RecordWriteError",
    "VerifyReport",
    "canonical_json",
    "content_hash",
    "entry_hash",
    "export_json",
    "iso_utc",
    "render_text",
    "signature_manifest",
    "verify_file",
]
