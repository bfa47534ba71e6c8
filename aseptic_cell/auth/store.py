"""The live user state: accounts, password hashes and history, status, roles, qualifications,
and the audit trail of every administration change, in SQLite.

21 CFR 11.300(a) [CFR11]: ids are unique and never reused - a user row is never deleted (a
trigger refuses it) and a disabled user keeps its id; 11.300(b): password history and ageing;
11.10(e),(i): the ``admin_audit`` table is append-only (triggers refuse UPDATE and DELETE) and
hash-chained (each row's hash covers the previous one), and each row carries the administrator's
e-signature and the exact signed text.

The cell keeps one store, ``users.db`` beside the lock-out store ``auth.db`` in the security
directory (:meth:`UserStore.beside`), shared by the supervisor, the HMI, the OPC UA server and
``cellctl``: a change made on one interface holds on all of them at once. It is seeded from
``config/users.yaml`` on first start; from then on the administrator changes users through
``cellctl users`` or the HMI, not by editing the file. Tests and tools use an in-memory store.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY COLLATE NOCASE, full_name TEXT NOT NULL, role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, password_hash TEXT NOT NULL, password_set_at REAL NOT NULL,
    must_change INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, created_by TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS users_never_deleted BEFORE DELETE ON users
    BEGIN SELECT RAISE(ABORT, 'users are never deleted, only disabled (21 CFR 11.300(a))'); END;
CREATE TRIGGER IF NOT EXISTS users_id_fixed BEFORE UPDATE OF id ON users
    BEGIN SELECT RAISE(ABORT, 'a user id never changes'); END;
CREATE TABLE IF NOT EXISTS password_history (
    id INTEGER PRIMARY KEY, user TEXT NOT NULL COLLATE NOCASE, password_hash TEXT NOT NULL, set_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS password_history_by_user ON password_history (user, id);
CREATE TABLE IF NOT EXISTS qualifications (
    user TEXT NOT NULL COLLATE NOCASE, action_class TEXT NOT NULL, expires_at REAL NOT NULL,
    granted_by TEXT NOT NULL, granted_at REAL NOT NULL, PRIMARY KEY (user, action_class));
CREATE TABLE IF NOT EXISTS admin_audit (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, detail TEXT NOT NULL, signature TEXT NOT NULL, prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS admin_audit_no_update BEFORE UPDATE ON admin_audit
    BEGIN SELECT RAISE(ABORT, 'the user administration audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_no_delete BEFORE DELETE ON admin_audit
    BEGIN SELECT RAISE(ABORT, 'the user administration audit trail is append-only'); END;
"""

GENESIS = "0" * 64


@dataclass(frozen=True)
class UserRow:
    id: str
    full_name: str
    role: str
    disabled: bool
    password_hash: str
    password_set_at: float
    must_change: bool
    created_at: float
    created_by: str


def audit_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's canonical JSON."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


class UserStore:
    """SQLite store of the live user state (``path`` None: in memory)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path else ":memory:"
        self._lock = threading.RLock()
        self._con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = FULL")
        self._con.executescript(_SCHEMA)

    @classmethod
    def beside(cls, guard_path: str) -> UserStore:
        """The store next to a lock-out store file (``users.db`` in the same directory)."""
        return cls(None if guard_path in ("", ":memory:") else Path(guard_path).with_name("users.db"))

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def tx(self, fn: Any) -> Any:
        """Run ``fn(connection)`` in one write transaction (one writer at a time, across processes)."""
        from .lockout import immediate_tx

        return immediate_tx(self._con, self._lock, fn)

    # ------------------------------------------------------------------ reads
    def user(self, user_id: str) -> UserRow | None:
        with self._lock:
            r = self._con.execute(
                "SELECT id, full_name, role, disabled, password_hash, password_set_at, must_change, "
                "created_at, created_by FROM users WHERE id = ?", (user_id,)).fetchone()
        if r is None or r[0] != user_id:  # ids are unique case-insensitively, matched exactly
            return None
        return UserRow(r[0], r[1], r[2], bool(r[3]), r[4], float(r[5]), bool(r[6]),
                                              float(r[7]), r[8])

    def users(self) -> list[UserRow]:
        with self._lock:
            ids = [r[0] for r in self._con.execute("SELECT id FROM users ORDER BY created_at, id")]
        return [u for u in (self.user(i) for i in ids) if u is not None]

    def history(self, user_id: str, n: int) -> list[str]:
        """The user's last ``n`` password hashes, newest first."""
        with self._lock:
            return [r[0] for r in self._con.execute(
                "SELECT password_hash FROM password_history WHERE user = ? ORDER BY id DESC LIMIT ?",
                (user_id, max(n, 1)))]

    def qualification(self, user_id: str, action_class: str) -> float | None:
        """Expiry (epoch s) of the user's qualification for ``action_class``, None if never qualified."""
        with self._lock:
            r = self._con.execute("SELECT expires_at FROM qualifications WHERE user = ? AND action_class = ?",
                                  (user_id, action_class)).fetchone()
        return None if r is None else float(r[0])

    def qualifications(self, user_id: str) -> dict[str, float]:
        with self._lock:
            return {r[0]: float(r[1]) for r in self._con.execute(
                "SELECT action_class, expires_at FROM qualifications WHERE user = ? ORDER BY action_class",
                (user_id,))}

    def audit(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._con.execute("SELECT id, t, actor, action, target, detail, signature, prev_hash, "
                                     "entry_hash FROM admin_audit ORDER BY id").fetchall()
        return [{"id": r[0], "t": r[1], "actor": r[2], "action": r[3], "target": r[4],
                 "detail": json.loads(r[5]), "signature": json.loads(r[6]), "prev_hash": r[7],
                 "entry_hash": r[8]} for r in rows]

    def verify_audit(self) -> list[str]:
        """Problems of the audit trail's hash chain (empty: intact)."""
        problems, prev = [], GENESIS
        for row in self.audit():
            if row["prev_hash"] != prev:
                problems.append(f"audit row {row['id']}: link broken")
            body = {k: row[k] for k in ("t", "actor", "action", "target", "detail", "signature")}
            if audit_hash(row["prev_hash"], body) != row["entry_hash"]:
                problems.append(f"audit row {row['id']}: hash mismatch (row changed)")
            prev = row["entry_hash"]
        return problems

    # ------------------------------------------------------------------ writes (inside tx)
    @staticmethod
    def append_audit(con: sqlite3.Connection, t: float, actor: str, action: str, target: str,
                     detail: dict[str, Any], signature: dict[str, Any] | None) -> str:
        r = con.execute("SELECT entry_hash FROM admin_audit ORDER BY id DESC LIMIT 1").fetchone()
        prev = r[0] if r else GENESIS
        body = {"t": t, "actor": actor, "action": action, "target": target, "detail": detail,
                "signature": signature or {}}
        h = audit_hash(prev, json.loads(json.dumps(body, default=str)))
        con.execute("INSERT INTO admin_audit (t, actor, action, target, detail, signature, prev_hash, entry_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (t, actor, action, target, json.dumps(detail, sort_keys=True, default=str),
                     json.dumps(signature or {}, sort_keys=True, default=str), prev, h))
        return h

    @staticmethod
    def insert_user(con: sqlite3.Connection, row: UserRow) -> None:
        con.execute("INSERT INTO users (id, full_name, role, disabled, password_hash, password_set_at, must_change, "
                    "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.id, row.full_name, row.role, int(row.disabled), row.password_hash, row.password_set_at,
                     int(row.must_change), row.created_at, row.created_by))
        con.execute("INSERT INTO password_history (user, password_hash, set_at) VALUES (?, ?, ?)",
                    (row.id, row.password_hash, row.password_set_at))

    @staticmethod
    def set_password(con: sqlite3.Connection, user_id: str, password_hash: str, now: float,
                     must_change: bool) -> None:
        con.execute("UPDATE users SET password_hash = ?, password_set_at = ?, must_change = ? WHERE id = ?",
                    (password_hash, now, int(must_change), user_id))
        con.execute("INSERT INTO password_history (user, password_hash, set_at) VALUES (?, ?, ?)",
                    (user_id, password_hash, now))

    @staticmethod
    def qualify(con: sqlite3.Connection, user_id: str, action_class: str, expires_at: float, by: str,
                now: float) -> None:
        con.execute("INSERT OR REPLACE INTO qualifications (user, action_class, expires_at, granted_by, granted_at) "
                    "VALUES (?, ?, ?, ?, ?)", (user_id, action_class, expires_at, by, now))
