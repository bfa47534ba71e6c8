"""Read one batch out of a record file without changing it (read-only SQLite connection), so a
report can be made from a record the supervisor is still writing.

The entries are the store's own :class:`~aseptic_cell.records.Entry` objects; the chain is
checked with the store's :func:`~aseptic_cell.records.verify_file` over the whole file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aseptic_cell.records import Entry, VerifyReport, verify_file

_COLUMNS = "seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload, prev_hash, hash"


class ReportError(Exception):
    """The record cannot be read or holds no such batch."""


def _entry(row: tuple[Any, ...]) -> Entry:
    seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload_json, prev_hash, hash_ = row
    try:
        payload = json.loads(payload_json)
        if not isinstance(payload, dict):
            payload = {"_payload": payload}
    except (TypeError, ValueError):
        payload = {"_unparseable_payload": str(payload_json)}
    return Entry(int(seq), float(ts), str(ts_iso), str(batch_id), str(kind), str(actor), str(role), str(action),
                 str(reason), payload, str(payload_json), str(prev_hash), str(hash_))


@dataclass(frozen=True)
class BatchSource:
    """One batch of a record file: its entries, the cell-level entries (``batch_id`` "") made
    while it ran (log-ins, lock-outs), and the whole file's chain check."""

    path: Path
    batch_id: str
    entries: tuple[Entry, ...]
    cell_entries: tuple[Entry, ...]
    chain: VerifyReport

    @property
    def start_ts(self) -> float:
        return self.entries[0].ts if self.entries else 0.0

    @property
    def end_ts(self) -> float:
        return self.entries[-1].ts if self.entries else 0.0


def batch_ids(path: str | os.PathLike[str]) -> list[str]:
    """The batch ids of a record file in the order they first appear."""
    with _connect(path) as conn:
        rows = conn.execute(
            "SELECT batch_id, MIN(seq) AS first FROM entries WHERE batch_id <> '' GROUP BY batch_id ORDER BY first"
        ).fetchall()
    return [str(r[0]) for r in rows]


class _connect:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        if not p.is_file():
            raise ReportError(f"no such record file: {p}")
        try:
            self.conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise ReportError(f"cannot open {p}: {exc}") from exc

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def load_batch(path: str | os.PathLike[str], batch_id: str | None = None) -> BatchSource:
    """Read ``batch_id`` (default: the last batch in the file) from a record file.

    Raises:
        ReportError: no such file, not a record file, or no entries of that batch.
    """
    p = Path(path)
    chain = verify_file(p)
    try:
        with _connect(p) as conn:
            if batch_id is None:
                row = conn.execute("SELECT batch_id FROM entries WHERE batch_id <> '' ORDER BY seq DESC LIMIT 1"
                                   ).fetchone()
                if row is None:
                    raise ReportError(f"{p}: no batch in this record")
                batch_id = str(row[0])
            rows = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE batch_id = ? ORDER BY seq",
                                (batch_id,)).fetchall()
            if not rows:
                raise ReportError(f"{p}: no entries of batch {batch_id!r}")
            first, last = rows[0][0], rows[-1][0]
            cell_rows = conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE batch_id = '' AND seq BETWEEN ? AND ? ORDER BY seq",
                (first, last)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{p}: not a readable batch record ({exc})") from exc
    return BatchSource(p, batch_id, tuple(_entry(r) for r in rows), tuple(_entry(r) for r in cell_rows), chain)
