"""The log-in guard: lock-out state and the security log, shared by every interface.

21 CFR Part 11 §11.300(d) [CFR-PART11]: attempts at unauthorised use are detected and
reported. One SQLite file (``auth.db`` in the security directory) is shared by the
supervisor, the HMI, the OPC UA server and the CLI, so a lock-out holds on every interface
and survives restarts; tests and tools may use an in-memory guard.

Atomic per user (no parallel-guess race): an attempt is *reserved* in a write transaction
(``BEGIN IMMEDIATE``: one writer at a time, across processes) before the password is checked,
and counts as a failure until it succeeds. So N parallel guesses can never check more than
``max_failed_attempts`` passwords in a window, and an attempt that succeeds while the account
was locked by concurrent failures is refused too.

Every failure, lock-out, refusal of a locked account, unlock and role refusal is an event in
the ``events`` table; the supervisor copies the events of the other interfaces into the batch
record (kind ``auth``, actor ``system``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .models import PasswordPolicy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY, user TEXT NOT NULL, t REAL NOT NULL,
                                     state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_by_user ON attempts (user, t);
CREATE TABLE IF NOT EXISTS locks (user TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, t REAL NOT NULL, user TEXT NOT NULL,
                                   action TEXT NOT NULL, source TEXT NOT NULL, detail TEXT NOT NULL);
"""

MAX_ID_LEN = 128
"""User ids are truncated to this in the store (id spraying cannot grow rows without bound)."""


class Locked(Exception):
    """The account is locked until ``until`` (epoch s of the guard's clock)."""

    def __init__(self, until: float) -> None:
        super().__init__(f"locked until {until}")
        self.until = until


def immediate_tx(con: sqlite3.Connection, lock: Any, fn: Any) -> Any:
    """Run ``fn(con)`` in one ``BEGIN IMMEDIATE`` write transaction under ``lock`` (one writer at a
    time in this process; SQLite's write lock across processes), rolled back if ``fn`` raises.
    Shared by the lock-out store and the live user store (:mod:`.store`)."""
    with lock:
        con.execute("BEGIN IMMEDIATE")
        try:
            out = fn(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return out


class LoginGuard:
    """Per-user attempt counting and lock-out in SQLite (``path`` None: in memory, this process).

    ``source`` names the interface in the events it writes (``hmi``, ``opcua_server``, ...).
    """

    def __init__(self, path: str | Path | None, policy: PasswordPolicy, *, source: str = "") -> None:
        self.path = str(path) if path else ":memory:"
        self.policy = policy
        self.source = source
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = FULL")
        self._con.executescript(_SCHEMA)

    @classmethod
    def shared(cls, policy: PasswordPolicy, *, source: str, directory: str | Path | None = None) -> LoginGuard:
        """The cell's guard: ``auth.db`` in the security directory (created if missing)."""
        from ..security.keys import default_security_dir

        d = Path(directory) if directory else default_security_dir()
        d.mkdir(parents=True, exist_ok=True)
        return cls(d / "auth.db", policy, source=source)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # ------------------------------------------------------------------ transactions
    def _tx(self, fn: Any) -> Any:
        return immediate_tx(self._con, self._lock, fn)

    def _count(self, con: sqlite3.Connection, user: str, now: float) -> int:
        row = con.execute("SELECT COUNT(*) FROM attempts WHERE user = ? AND t > ?",
                          (user, now - self.policy.failure_window_s)).fetchone()
        return int(row[0])

    def _locked_until(self, con: sqlite3.Connection, user: str, now: float) -> float | None:
        row = con.execute("SELECT until FROM locks WHERE user = ?", (user,)).fetchone()
        return float(row[0]) if row is not None and now < float(row[0]) else None

    def _event(self, con: sqlite3.Connection, now: float, user: str, action: str, detail: dict[str, Any]) -> None:
        con.execute("INSERT INTO events (t, user, action, source, detail) VALUES (?, ?, ?, ?, ?)",
                    (now, user, action, self.source, json.dumps(detail, sort_keys=True, default=str)))

    def _lock_now(self, con: sqlite3.Connection, user: str, now: float) -> float:
        until = now + self.policy.lockout_s
        con.execute("INSERT OR REPLACE INTO locks (user, until) VALUES (?, ?)", (user, until))
        con.execute("DELETE FROM attempts WHERE user = ?", (user,))
        self._event(con, now, user, "auth.lockout", {"lockout_s": self.policy.lockout_s,
                                                     "after_attempts": self.policy.max_failed_attempts})
        return until

    # ------------------------------------------------------------------ the protocol
    def begin(self, user: str, now: float) -> int:
        """Reserve one attempt for ``user``; its id.

        Raises:
            Locked: the account is locked, or the window's attempts are used up (it locks now).
        """
        user = user[:MAX_ID_LEN]

        def tx(con: sqlite3.Connection) -> int | float:
            until = self._locked_until(con, user, now)
            if until is None and self._count(con, user, now) >= self.policy.max_failed_attempts:
                until = self._lock_now(con, user, now)
            if until is not None:
                self._event(con, now, user, "auth.refused_locked", {"locked_until": until})
                return float(until)
            cur = con.execute("INSERT INTO attempts (user, t, state) VALUES (?, ?, 'pending')", (user, now))
            return int(cur.lastrowid or 0)

        out = self._tx(tx)
        if isinstance(out, float):
            raise Locked(out)
        return int(out)

    def fail(self, attempt: int, user: str, now: float) -> bool:
        """The reserved attempt failed (it stays counted); True if the account is now locked."""
        user = user[:MAX_ID_LEN]

        def tx(con: sqlite3.Connection) -> bool:
            con.execute("UPDATE attempts SET state = 'failed' WHERE id = ?", (attempt,))
            self._event(con, now, user, "auth.failed", {})
            if self._locked_until(con, user, now) is None and \
                    self._count(con, user, now) >= self.policy.max_failed_attempts:
                self._lock_now(con, user, now)
                return True
            return False

        return bool(self._tx(tx))

    def succeed(self, attempt: int, user: str, now: float) -> None:
        """The password was right: clear the user's failures, unless the account got locked
        meanwhile (by concurrent failures): then refuse.

        Raises:
            Locked: locked while this attempt was being checked.
        """
        user = user[:MAX_ID_LEN]

        def tx(con: sqlite3.Connection) -> float | None:
            until = self._locked_until(con, user, now)
            if until is not None:
                con.execute("DELETE FROM attempts WHERE id = ?", (attempt,))
                self._event(con, now, user, "auth.refused_locked", {"locked_until": until})
                return until
            con.execute("DELETE FROM attempts WHERE user = ?", (user,))
            return None

        until = self._tx(tx)
        if until is not None:
            raise Locked(float(until))

    def forget(self, attempt: int) -> None:
        """Drop a reserved attempt that was neither a failure nor a success (disabled account)."""
        self._tx(lambda con: con.execute("DELETE FROM attempts WHERE id = ?", (attempt,)))

    def is_locked(self, user: str, now: float) -> bool:
        with self._lock:
            return self._locked_until(self._con, user[:MAX_ID_LEN], now) is not None

    def unlock(self, user: str, by: str, now: float) -> None:
        def tx(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM locks WHERE user = ?", (user[:MAX_ID_LEN],))
            con.execute("DELETE FROM attempts WHERE user = ?", (user[:MAX_ID_LEN],))
            self._event(con, now, user[:MAX_ID_LEN], "auth.unlock", {"by": by})

        self._tx(tx)

    def event(self, kind: str, user: str, now: float, **detail: Any) -> None:
        """Log a security event (e.g. ``auth.role_refused``)."""
        self._tx(lambda con: self._event(con, now, str(user)[:MAX_ID_LEN], kind, detail))

    def events_after(self, last_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """Events with id > ``last_id``, oldest first."""
        with self._lock:
            rows = self._con.execute("SELECT id, t, user, action, source, detail FROM events WHERE id > ? "
                                     "ORDER BY id LIMIT ?", (last_id, limit)).fetchall()
        return [{"id": r[0], "t": r[1], "user": r[2], "action": r[3], "source": r[4],
                 "detail": json.loads(r[5])} for r in rows]

    def last_event_id(self) -> int:
        with self._lock:
            row = self._con.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)
