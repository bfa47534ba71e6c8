"""The batch record in PostgreSQL: for a site where many cells write to one database (issue 15 item 9).

Same contract as the SQLite :class:`~.store.BatchRecord` (append-only, hash-chained with the
encoding of :mod:`.canonical`, signed checkpoints per commit with a :class:`~.seal.Sealer`,
fail-safe: an append that cannot be committed raises :class:`~.store.RecordWriteError` and tells
the failure listeners; the chain is verified when the store is opened) — 21 CFR 11.10(e) [CFR11],
Annex 11 §7.1 [ANNEX11-2011].

* One table for every chain; each ``chain`` (a cell, or a batch: the site chooses the name) has
  its own ``seq`` from 1 and its own hash chain, so chains are independent of each other.
* Concurrent writers to one chain serialise on a transaction-scoped advisory lock of the chain
  and read the head inside the transaction; writers of different chains do not wait for each
  other. A commit returns after the WAL was flushed (the server's ``fsync`` and
  ``synchronous_commit`` on).
* Append-only in the database itself: triggers refuse UPDATE, DELETE and TRUNCATE of entries and
  checkpoints and an INSERT that does not extend the chain's head, and the writer role is granted
  INSERT and SELECT only (:func:`install_schema`, run once by the schema owner).

The DSN comes from the environment (``ASEPTIC_CELL_RECORD_DSN``; libpq's ``PG*`` variables and
``~/.pgpass`` for the secret), never from the configuration files (:func:`~.backend.open_record`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import GENESIS_HASH, canonical_json, entry_hash
from .seal import Checkpoint, Sealer
from .store import (
    KINDS,
    POST_RELEASE_CORRECTION,
    ChainWalk,
    Clock,
    Entry,
    RecordError,
    RecordWriteError,
    VerifyReport,
    _row_to_entry,
    closed_refusal,
)

_CLOSED_SQL = ("SELECT seq, action FROM record_entries WHERE chain = %s AND batch_id = %s AND (kind = 'disposition' "
               "OR action = %s) ORDER BY seq DESC LIMIT 1")

_COLUMNS = "seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload, prev_hash, hash"

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS record_entries (
    chain     TEXT             NOT NULL,
    seq       BIGINT           NOT NULL,
    ts        DOUBLE PRECISION NOT NULL,
    ts_iso    TEXT             NOT NULL,
    batch_id  TEXT             NOT NULL,
    kind      TEXT             NOT NULL,
    actor     TEXT             NOT NULL,
    role      TEXT             NOT NULL,
    action    TEXT             NOT NULL,
    reason    TEXT             NOT NULL,
    payload   TEXT             NOT NULL,
    prev_hash TEXT             NOT NULL,
    hash      TEXT             NOT NULL,
    PRIMARY KEY (chain, seq),
    UNIQUE (chain, hash)
);
CREATE INDEX IF NOT EXISTS record_entries_by_batch ON record_entries (chain, batch_id, seq);
CREATE TABLE IF NOT EXISTS record_checkpoints (
    chain     TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    hash      TEXT   NOT NULL,
    signed_at TEXT   NOT NULL,
    key_id    TEXT   NOT NULL,
    signature TEXT   NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE OR REPLACE FUNCTION record_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'batch record is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE FUNCTION record_append_at_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE head_seq BIGINT; head_hash TEXT;
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM record_entries
        WHERE chain = NEW.chain ORDER BY seq DESC LIMIT 1;
    IF NEW.seq <> COALESCE(head_seq, 0) + 1 OR NEW.prev_hash <> COALESCE(head_hash, '{GENESIS_HASH}') THEN
        RAISE EXCEPTION 'batch record: an entry can only be appended at the head of the chain';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION record_closed_batch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last_action TEXT;
BEGIN
    SELECT action INTO last_action FROM record_entries
        WHERE chain = NEW.chain AND batch_id = NEW.batch_id
          AND (kind = 'disposition' OR action = 'record.post_release_correction')
        ORDER BY seq DESC LIMIT 1;
    IF last_action IN ('disposition.release', 'disposition.reject')
       AND NOT (NEW.kind = 'correction' AND NEW.action = 'record.post_release_correction') THEN
        RAISE EXCEPTION 'batch record: batch % is closed (released or rejected)', NEW.batch_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS record_entries_closed_batch ON record_entries;
CREATE TRIGGER record_entries_closed_batch BEFORE INSERT ON record_entries
    FOR EACH ROW EXECUTE FUNCTION record_closed_batch();
DROP TRIGGER IF EXISTS record_entries_no_change ON record_entries;
CREATE TRIGGER record_entries_no_change BEFORE UPDATE OR DELETE ON record_entries
    FOR EACH ROW EXECUTE FUNCTION record_refuse_change();
DROP TRIGGER IF EXISTS record_entries_no_truncate ON record_entries;
CREATE TRIGGER record_entries_no_truncate BEFORE TRUNCATE ON record_entries
    FOR EACH STATEMENT EXECUTE FUNCTION record_refuse_change();
DROP TRIGGER IF EXISTS record_entries_at_head ON record_entries;
CREATE TRIGGER record_entries_at_head BEFORE INSERT ON record_entries
    FOR EACH ROW EXECUTE FUNCTION record_append_at_head();
DROP TRIGGER IF EXISTS record_checkpoints_no_change ON record_checkpoints;
CREATE TRIGGER record_checkpoints_no_change BEFORE UPDATE OR DELETE ON record_checkpoints
    FOR EACH ROW EXECUTE FUNCTION record_refuse_change();
DROP TRIGGER IF EXISTS record_checkpoints_no_truncate ON record_checkpoints;
CREATE TRIGGER record_checkpoints_no_truncate BEFORE TRUNCATE ON record_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION record_refuse_change();
REVOKE ALL ON record_entries, record_checkpoints FROM PUBLIC;
"""


def install_schema(admin_dsn: str, writer_role: str) -> None:
    """Create (idempotently) the tables, triggers and grants, as the schema owner: the writer role
    gets SELECT and INSERT only."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7215301)")  # two installers at once
        conn.execute(SCHEMA_SQL.encode())
        role = psycopg.sql.Identifier(writer_role)
        conn.execute(psycopg.sql.SQL("REVOKE ALL ON record_entries, record_checkpoints FROM {}").format(role))
        conn.execute(psycopg.sql.SQL("GRANT SELECT, INSERT ON record_entries, record_checkpoints TO {}")
                     .format(role))


class PgBatchRecord:
    """One chain of the batch record in PostgreSQL (same API as :class:`~.store.BatchRecord`).

    Args:
        dsn: libpq connection string of the writer role (from the environment).
        chain: the chain's name (the cell id, or the batch id for a chain per batch).
        clock: injected clock.
        sealer: signs a checkpoint of the head with every commit.
    """

    def __init__(self, dsn: str, chain: str, clock: Clock, *, sealer: Sealer | None = None,
                 connect_timeout_s: float = 10.0) -> None:
        if not chain:
            raise ValueError("a PostgreSQL record needs a chain name (cell or batch id)")
        self.dsn = dsn
        self.chain = chain
        self.path = Path(f"postgresql-{chain}")
        self._clock = clock
        self.sealer = sealer
        self._timeout = connect_timeout_s
        self._lock = threading.RLock()
        self._listeners: list[Callable[[str], None]] = []
        self.failures = 0
        self._closed = False
        try:
            self._conn: psycopg.Connection[Any] | None = self._connect()
        except psycopg.Error as exc:
            raise RecordError(f"batch record {self.path}: cannot connect: {exc}") from exc
        self.open_report: VerifyReport = self._verify(None, self._key(), False)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(1, int(self._timeout)))

    def _key(self) -> Ed25519PublicKey | None:
        return self.sealer.public_key if self.sealer else None

    @property
    def _c(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise RecordError(f"batch record {self.path} is closed")
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()  # a lost connection is reopened at the next use
        return self._conn

    # ----------------------------------------------------------------- health
    def add_failure_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def health(self) -> str:
        if not self.open_report.ok:
            return f"{self.path}: record failed its integrity check when opened: {self.open_report.problem}"
        return ""

    def probe(self) -> str:
        return ""

    def check(self) -> VerifyReport:
        return self.verify()

    def _failed(self, what: str, exc: BaseException) -> RecordWriteError:
        self.failures += 1
        reason = f"batch record {self.path}: {what} not written: {exc}"
        for listener in list(self._listeners):
            try:
                listener(reason)
            except Exception:  # noqa: BLE001 - a listener's bug must not hide the failure
                pass
        return RecordWriteError(reason)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PgBatchRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def clock(self) -> Clock:
        return self._clock

    # ----------------------------------------------------------------- writing
    def append(self, kind: str, *, batch_id: str, actor: str, role: str = "", action: str = "",
               reason: str = "", payload: Mapping[str, Any] | None = None) -> Entry:
        """Append one entry (committed and flushed to disk when this returns); see
        :meth:`.store.BatchRecord.append` for the validation."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
        for name, value in {"batch_id": batch_id, "actor": actor, "role": role, "action": action,
                            "reason": reason}.items():
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {type(value).__name__}")
        if not actor.strip():
            raise ValueError("actor must name a user id or 'system' (ALCOA+: attributable)")
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise ValueError(f"payload must be a mapping (JSON object), got {type(payload).__name__}")
        payload_json = canonical_json(dict(payload))
        what = f"{kind} {action or ''}".strip()
        with self._lock:
            bad = self.health()
            if bad:
                raise self._failed(what, RecordError(bad))
            try:
                conn = self._c
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.chain,))
                    row = conn.execute(_CLOSED_SQL, (self.chain, batch_id, POST_RELEASE_CORRECTION)).fetchone()
                    closed = closed_refusal(batch_id, (int(row[0]), str(row[1])) if row else None, kind, action,
                                            payload)
                    if closed is not None:
                        raise closed
                    ts = float(self._clock.now())
                    from .canonical import iso_utc

                    ts_iso = iso_utc(ts)
                    head = conn.execute("SELECT seq, hash FROM record_entries WHERE chain = %s "
                                        "ORDER BY seq DESC LIMIT 1", (self.chain,)).fetchone()
                    seq, prev_hash = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS_HASH)
                    digest = entry_hash(seq, ts, ts_iso, batch_id, kind, actor, role, action, reason,
                                        payload_json, prev_hash)
                    conn.execute(
                        f"INSERT INTO record_entries (chain, {_COLUMNS}) "
                        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        (self.chain, seq, ts, ts_iso, batch_id, kind, actor, role, action, reason,
                         payload_json, prev_hash, digest))
                    if self.sealer is not None:
                        cp = self.sealer.checkpoint(seq, digest, ts_iso)
                        conn.execute("INSERT INTO record_checkpoints (chain, seq, hash, signed_at, key_id, "
                                     "signature) VALUES (%s,%s,%s,%s,%s,%s)",
                                     (self.chain, cp.seq, cp.hash, cp.signed_at, cp.key_id, cp.signature))
            except (psycopg.Error, OSError) as exc:
                raise self._failed(what, exc) from exc
        return Entry(seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, json.loads(payload_json),
                     payload_json, prev_hash, digest)

    def correct(self, original_seq: int, *, actor: str, role: str, reason: str,
                changes: Mapping[str, tuple[Any, Any]]) -> Entry:
        from .store import BatchRecord

        return BatchRecord.correct(self, original_seq, actor=actor, role=role, reason=reason,  # type: ignore[arg-type]
                                   changes=changes)

    def record_cycle_result(self, kind: str, result: Mapping[str, Any], *, batch_id: str, actor: str = "system",
                            role: str = "") -> Entry:
        from .store import BatchRecord

        return BatchRecord.record_cycle_result(self, kind, result, batch_id=batch_id,  # type: ignore[arg-type]
                                               actor=actor, role=role)

    # ----------------------------------------------------------------- reading
    def _rows(self, where: str = "", args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._c.execute(f"SELECT {_COLUMNS} FROM record_entries WHERE chain = %s{where} ORDER BY seq",
                                   (self.chain, *args)).fetchall()

    def get(self, seq: int) -> Entry | None:
        rows = self._rows(" AND seq = %s", (seq,))
        return _row_to_entry(rows[0]) if rows else None

    def entries(self, batch_id: str | None = None, kinds: Iterable[str] | None = None) -> list[Entry]:
        where, args = "", list[Any]()
        if batch_id is not None:
            where += " AND batch_id = %s"
            args.append(batch_id)
        if kinds is not None:
            kinds = list(kinds)
            if not kinds:
                return []
            where += " AND kind = ANY(%s)"
            args.append(kinds)
        return [_row_to_entry(r) for r in self._rows(where, args)]

    def closing(self, batch_id: str) -> tuple[int, str] | None:
        """(seq, action) of the batch's last ``disposition`` entry or post-release correction."""
        with self._lock:
            row = self._c.execute(_CLOSED_SQL, (self.chain, batch_id, POST_RELEASE_CORRECTION)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def head(self) -> tuple[int, str]:
        with self._lock:
            row = self._c.execute("SELECT seq, hash FROM record_entries WHERE chain = %s ORDER BY seq DESC LIMIT 1",
                                  (self.chain,)).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

    def __len__(self) -> int:
        with self._lock:
            row = self._c.execute("SELECT COUNT(*) FROM record_entries WHERE chain = %s", (self.chain,)).fetchone()
        return int(row[0]) if row else 0

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            rows = self._c.execute("SELECT seq, hash, signed_at, key_id, signature FROM record_checkpoints "
                                   "WHERE chain = %s ORDER BY seq", (self.chain,)).fetchall()
        return [Checkpoint(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyReport:
        key = self._key()
        return self._verify(expected_head, key, key is not None)

    def _verify(self, expected_head: tuple[int, str] | None, public_key: Ed25519PublicKey | None,
                require_sealed_head: bool) -> VerifyReport:
        """The chain walk of :func:`.store._verify_connection` over this chain's rows, read in one
        repeatable-read snapshot."""
        try:
            with self._lock:
                conn = self._c
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    rows = self._rows()
                    cps = {c.seq: c for c in self.checkpoints()}
        except psycopg.Error as exc:
            return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"record unreadable: {exc}")
        walk = ChainWalk(cps, public_key, expected_head)

        def bad(seq: int, problem: str) -> VerifyReport:
            return VerifyReport(False, walk.count, walk.count, walk.prev_hash, seq, problem, tuple(walk.regressions),
                                walk.cps_ok, False, walk.sigs_ok, tuple(walk.no_content))

        for row in rows:
            entry = _row_to_entry(row)
            seq, nxt = entry.seq, walk.count + 1
            if seq != nxt:
                return bad(nxt, f"gap: seq {nxt} missing (row removed)" if seq > nxt
                           else f"chain broken at seq {nxt} (reordered or inserted)")
            problem = walk.step(entry)
            if problem:
                return bad(seq, problem)
        count = walk.count
        extra = [q for q in cps if q > count]
        if extra:
            return bad(count + 1, f"signed checkpoint at seq {extra[0]} beyond the last entry {count} (rows removed)")
        if require_sealed_head and count and count not in cps:
            return bad(max(cps, default=0) + 1, f"head seq {count} is not covered by a signed checkpoint")
        if not walk.anchor_seen:
            assert expected_head is not None
            return bad(expected_head[0], f"gap: seq {expected_head[0]} missing (row removed)")
        return VerifyReport(True, count, count, walk.prev_hash, None, "", tuple(walk.regressions), walk.cps_ok,
                            public_key is not None and (count == 0 or count in cps), walk.sigs_ok,
                            tuple(walk.no_content))

    # ----------------------------------------------------------------- export
    def export_json(self, batch_id: str) -> str:
        from .render import export_json

        return export_json(self, batch_id)  # type: ignore[arg-type]

    def render_text(self, batch_id: str) -> str:
        from .render import render_text

        return render_text(self, batch_id)  # type: ignore[arg-type]
