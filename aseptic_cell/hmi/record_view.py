"""Read-only view of the batch record for the HMI: a batch's entries, the chain check and
every signature."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from aseptic_cell.records import verify_file

log = logging.getLogger("aseptic_cell.hmi")


def read_record(path: str, batch_id: str, limit: int = 400) -> dict[str, Any]:
    """Entries of ``batch_id`` (newest ``limit``), the chain check and every signature (read-only)."""
    from aseptic_cell.records import signature_manifest

    report = verify_file(path)
    entries: list[dict[str, Any]] = []
    p = Path(path)
    if p.is_file():
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            sql = (
                "SELECT seq, ts_iso, batch_id, kind, actor, role, action, reason, payload, hash FROM entries"
            )
            args: list[Any] = []
            if batch_id:
                sql += " WHERE batch_id IN (?, '')"
                args.append(batch_id)
            sql += " ORDER BY seq DESC LIMIT ?"
            args.append(limit)
            rows = conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            rows = []
            report_problem = f"cannot read entries: {exc}"
            log.warning(report_problem)
        finally:
            conn.close()
        for seq, ts_iso, bid, kind, actor, role, action, reason, payload, h in reversed(rows):
            try:
                pl = json.loads(payload)
            except ValueError:
                pl = {}
            sig = (
                pl
                if kind == "signature"
                else pl.get("signature")
                if isinstance(pl.get("signature"), dict)
                else None
            )
            entries.append(
                {
                    "seq": seq,
                    "ts_iso": ts_iso,
                    "batch_id": bid,
                    "kind": kind,
                    "actor": actor,
                    "role": role,
                    "action": action,
                    "reason": reason,
                    "hash": h,
                    "signature": signature_manifest(sig) if sig else None,
                }
            )
    return {
        "path": str(path),
        "batch_id": batch_id,
        "verify": report.to_dict(),
        "verified_text": str(report),
        "entries": entries,
        "signatures": [e["signature"] for e in entries if e["signature"]],
    }
