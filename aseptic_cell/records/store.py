"""The batch record and audit trail: one append-only, hash-chained SQLite table.

Design (ALCOA+ [MHRA-DI-2018] [PICS-PI041]; batch production records [ISA88] (Part 4);
Part 11 §11.10(c)(e) [CFR11]; Annex 11 §9 [ANNEX11-2011]):

* One file per cell (or per campaign), SQLite in WAL mode with ``synchronous=FULL`` so a
  committed entry has been fsync'ed before :meth:`BatchRecord.append` returns.
* One table ``entries``; each row carries ``prev_hash`` (the previous row's hash, 64 zeros
  for the first row) and ``hash`` = SHA-256 over all its fields in the canonical encoding of
  :mod:`.canonical`. A changed, removed, inserted or reordered row breaks the chain and
  :func:`verify_file` names the first bad ``seq``, even when someone dropped the triggers.
* Triggers refuse UPDATE and DELETE, and refuse an INSERT that does not extend the head.
  The head (seq, hash) is also kept in ``record_head`` so that cutting rows off the end is
  detected too.
* Writers serialise with ``BEGIN IMMEDIATE`` and read the head inside the transaction, so
  several threads or processes can append to the same file without forking the chain.
* Fail-safe (ALCOA+ "complete" [MHRA-DI-2018]; Annex 11 §7.1 [ANNEX11-2011]): every commit is
  checkpointed into the main file at once (``wal_autocheckpoint = 1``), so losing or cutting the
  WAL loses no committed entry; a WAL that shrank under the open record (truncated) is detected
  at the next append. An append that cannot be committed (disk full, I/O error, lock timeout,
  malformed file, WAL truncated, a file that failed its integrity check when opened) raises
  :class:`RecordWriteError` and tells every failure listener (the supervisor holds the batch
  and raises ``CELL_RECORD_FAULT``); it is never only a log line. Opening a record runs SQLite's
  ``quick_check`` and the chain verification (:attr:`BatchRecord.open_report`), so a file
  damaged by a crash is found before anything is added to it.
* Nothing is ever changed in place: a correction is a new entry of kind ``correction`` that
  names the original ``seq``/``hash`` and carries old and new values; printouts flag the
  original as changed later.

The chain is not keyed: it proves that nobody changed the file *without recomputing every
later hash*. Anchor the head hash outside the file (it is printed on every export and
covered by the QA release signature) to also catch a complete rewrite; see ``expected_head``
in :meth:`BatchRecord.verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import GENESIS_HASH, HASH_SCHEME, canonical_json, entry_hash, is_sha256_hex, iso_utc
from .seal import Checkpoint, Sealer

SCHEMA_VERSION = "1"

KINDS: frozenset[str] = frozenset(
    {
        "phase_transition",  # ISA-88 phase/unit state change (time, trigger, actor) [ISA88]
        "command",  # an accepted operator or system command
        "refusal",  # a refused command with its reason (interlock, permission) - ARCHITECTURE rule 3
        "trip",  # an interlock trip / safe-state transition
        "cycle_result",  # VHP or autoclave cycle result (Annex 1 §8.50 [ANNEX1-2022]; [EN285-2015 §6.5])
        "glove_test",  # glove integrity test result (Annex 1 §4.24 [ANNEX1-2022] [M])
        "intervention",  # inherent / corrective intervention (Annex 1 §8.16-8.18 [ANNEX1-2022] [M])
        "alarm",  # ISA-18.2 alarm events [ISA18.2]
        "signature",  # Part 11 §11.50 e-signature manifestation
        "deviation",  # deviation raised / linked / closed
        "material",  # materials, Beta container and autoclave load IDs (EBR content)
        "environment",  # environmental monitoring summaries and excursions (EBR content)
        "correction",  # a correction of an earlier entry (old/new values, reason) - Annex 11 §9
        "auth",  # failed log-ins, lock-outs (Part 11 §11.300(d))
        "clock",  # clock synchronisation / change events [ECA-TS]
        "config",  # configuration or recipe changes
        "note",  # free-text operator / QA note
        "custody",  # chain-of-custody event of a container (aseptic_cell/coi/custody.py) [CFR1271 §1271.290]
        "disposition",  # QA release / reject of a batch over its head hash (aseptic_cell/disposition) - closes it
    }
)

CLOSING_ACTIONS = ("disposition.release", "disposition.reject")
"""Actions of a ``disposition`` entry that close the batch: nothing more is appended to it ..."""
POST_RELEASE_CORRECTION = "record.post_release_correction"
"""... except a ``correction`` entry with this action carrying an e-signature whose stored content
hashes to its ``record_hash``; it reopens the batch for disposition (aseptic_cell/disposition)."""
_CLOSED_SQL = ("SELECT seq, action FROM entries WHERE batch_id = ? AND (kind = 'disposition' OR action = "
               f"'{POST_RELEASE_CORRECTION}') ORDER BY seq DESC LIMIT 1")

_TEXT_FIELDS = ("batch_id", "actor", "role", "action", "reason")
_COLUMNS = "seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload, prev_hash, hash"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS record_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS record_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    seq       INTEGER PRIMARY KEY,
    ts        REAL    NOT NULL,
    ts_iso    TEXT    NOT NULL,
    batch_id  TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS entries_by_batch ON entries (batch_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      TEXT    NOT NULL,
    signed_at TEXT    NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'batch record is append-only: UPDATE of a checkpoint is refused');
END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'batch record is append-only: DELETE of a checkpoint is refused');
END;
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'batch record is append-only: UPDATE of an entry is refused');
END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'batch record is append-only: DELETE of an entry is refused');
END;
CREATE TRIGGER IF NOT EXISTS entries_closed_batch BEFORE INSERT ON entries
WHEN (SELECT action FROM entries WHERE batch_id = NEW.batch_id
        AND (kind = 'disposition' OR action = 'record.post_release_correction')
        ORDER BY seq DESC LIMIT 1) IN ('disposition.release', 'disposition.reject')
  AND NOT (NEW.kind = 'correction' AND NEW.action = 'record.post_release_correction')
BEGIN
    SELECT RAISE(ABORT, 'batch record: the batch is closed (released or rejected)');
END;
CREATE TRIGGER IF NOT EXISTS entries_append_at_head BEFORE INSERT ON entries
WHEN NEW.seq <> COALESCE((SELECT MAX(seq) FROM entries), 0) + 1
  OR NEW.prev_hash <> COALESCE((SELECT hash FROM entries ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
BEGIN
    SELECT RAISE(ABORT, 'batch record: an entry can only be appended at the head of the chain');
END;
"""


class Clock(Protocol):
    def now(self) -> float: ...


class RecordError(Exception):
    """The record file cannot be used (wrong schema, not a record, closed)."""


class RecordClosedError(RecordError):
    """An append to a batch that QA released or rejected (the batch's record is closed); only a
    signed post-release correction may be appended, and it reopens the disposition. Nothing was
    written; this is a refusal, not a failure of the store (the failure listeners are not told)."""


def closed_refusal(batch_id: str, closing: tuple[int, str] | None, kind: str, action: str,
                   payload: Mapping[str, Any]) -> RecordClosedError | None:
    """The refusal of an append of ``kind``/``action`` to ``batch_id`` whose last disposition or
    post-release correction is ``closing`` (seq, action), or None when it may be appended."""
    if closing is None or closing[1] not in CLOSING_ACTIONS or not batch_id:
        return None
    if kind == "correction" and action == POST_RELEASE_CORRECTION:
        sig = payload.get("signature")
        if not isinstance(sig, Mapping):
            return RecordClosedError(f"batch {batch_id}: a post-release correction needs an e-signature")
        content, signed = sig.get("signed_content"), sig.get("record_hash")
        if not (isinstance(content, str) and str(sig.get("user_id") or "").strip()
                and hashlib.sha256(content.encode("utf-8")).hexdigest() == signed):
            return RecordClosedError(f"batch {batch_id}: the post-release correction's e-signature does not cover "
                                     "its stored content (21 CFR 11.70)")
        return None
    verb = closing[1].split(".", 1)[1] + "d"
    return RecordClosedError(f"batch {batch_id} was {verb} by QA at seq {closing[0]}: its record is closed; "
                             f"{kind} {action or ''} refused (only a signed post-release correction may be "
                             "appended, and it reopens the disposition)")


class RecordWriteError(RecordError):
    """An append was not committed because of the store (disk full, I/O error, lock timeout,
    malformed file, WAL truncated, integrity check failed on open). Nothing of it was written."""


@dataclass(frozen=True)
class Entry:
    """One immutable entry of the batch record."""

    seq: int
    ts: float
    ts_iso: str
    batch_id: str
    kind: str
    actor: str
    role: str
    action: str
    reason: str
    payload: dict[str, Any]
    payload_json: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "ts_iso": self.ts_iso,
            "batch_id": self.batch_id,
            "kind": self.kind,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "reason": self.reason,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def computed_hash(self) -> str:
        return entry_hash(
            self.seq,
            self.ts,
            self.ts_iso,
            self.batch_id,
            self.kind,
            self.actor,
            self.role,
            self.action,
            self.reason,
            self.payload_json,
            self.prev_hash,
        )


@dataclass(frozen=True)
class VerifyReport:
    """Result of checking the whole hash chain of a record file."""

    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""
    clock_regressions: tuple[int, ...] = field(default=())
    """Seqs whose time stamp is earlier than the previous entry's (a clock change [ECA-TS]).
    A warning shown on printouts; it does not make the chain invalid."""
    checkpoints: int = 0
    """Signed checkpoints found whose hash matches the entry at their seq."""
    sealed: bool = False
    """The checkpoint signatures were verified with the cell's public record key and the last
    one covers the head (:mod:`.seal`)."""
    signatures_checked: int = 0
    """Signature entries whose stored signed content hashes to the signed ``record_hash`` (§11.70)."""
    signatures_without_content: tuple[int, ...] = field(default=())
    """Seqs of signature entries recorded without their signed content (written by an older
    version or a path that does not store it): their hash cannot be re-verified. A warning."""

    def __str__(self) -> str:
        if self.ok:
            text = f"record OK: {self.count} entries, head seq {self.head_seq}, head hash {self.head_hash}"
            if self.sealed:
                text += f"; {self.checkpoints} signed checkpoints verified, head signed"
            elif self.checkpoints:
                text += f"; {self.checkpoints} checkpoints match (signatures NOT checked: no public key)"
            if self.signatures_checked:
                text += f"; {self.signatures_checked} e-signature content hashes verified"
            if self.signatures_without_content:
                text += ("; WARNING e-signatures without stored content at seq "
                         f"{', '.join(map(str, self.signatures_without_content[:20]))}")
            if self.clock_regressions:
                text += f"; WARNING clock went backwards at seq {', '.join(map(str, self.clock_regressions))}"
            return text
        return f"record INVALID: {self.problem} ({self.count} entries checked)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "clock_regressions": list(self.clock_regressions),
            "checkpoints": self.checkpoints,
            "sealed": self.sealed,
            "signatures_checked": self.signatures_checked,
            "signatures_without_content": list(self.signatures_without_content),
        }


def _row_to_entry(row: tuple[Any, ...]) -> Entry:
    seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload_json, prev_hash, hash_ = row
    try:
        payload = json.loads(payload_json)
    except (TypeError, ValueError):
        payload = {"_unparseable_payload": str(payload_json)}
    return Entry(
        seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload, payload_json, prev_hash, hash_
    )


def _load_checkpoints(conn: sqlite3.Connection) -> dict[int, Checkpoint]:
    """The checkpoints table (absent in a file never opened read-write by this version: empty)."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'").fetchone()
    if not has:
        return {}
    rows = conn.execute("SELECT seq, hash, signed_at, key_id, signature FROM checkpoints ORDER BY seq")
    return {int(r[0]): Checkpoint(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows}


def _signature_problem(entry: Entry) -> str | None:
    """None: not a signature entry or no stored content; "": content verified; else the problem."""
    if entry.kind != "signature":
        return None
    content = entry.payload.get("signed_content")
    if content is None:
        return None
    signed = entry.payload.get("record_hash")
    if not isinstance(content, str) or hashlib.sha256(content.encode("utf-8")).hexdigest() != signed:
        return (f"e-signature at seq {entry.seq}: the stored signed content does not hash to the signed "
                "record_hash (content changed after signing, 21 CFR 11.70)")
    return ""


class ChainWalk:
    """The per-entry checks of a chain walk, shared by the SQLite and PostgreSQL stores: the
    entry's hash, its link to the previous one, the signed checkpoint at its seq (and its
    signature with ``public_key``), the content of an e-signature, time regressions and the
    external anchor ``expected_head``. Entries are given in ``seq`` order (each store checks the
    order of its own rows)."""

    def __init__(self, checkpoints: Mapping[int, Checkpoint], public_key: Ed25519PublicKey | None,
                 expected_head: tuple[int, str] | None) -> None:
        self.checkpoints, self.public_key, self.expected_head = checkpoints, public_key, expected_head
        self.prev_hash, self.count = GENESIS_HASH, 0
        self.prev_ts: float | None = None
        self.sigs_ok = self.cps_ok = 0
        self.regressions: list[int] = []
        self.no_content: list[int] = []
        self.anchor_seen = expected_head is None

    def step(self, entry: Entry) -> str | None:
        """The problem with ``entry`` (and the walk stops), or None (the walk moves past it)."""
        seq = entry.seq
        if entry.computed_hash() != entry.hash:
            return f"hash mismatch at seq {seq} (row changed)"
        if entry.prev_hash != self.prev_hash:
            return f"chain broken at seq {seq} (reordered or inserted)"
        cp = self.checkpoints.get(seq)
        if cp is not None:
            if cp.hash != entry.hash:
                return (f"signed checkpoint mismatch at seq {seq}: the entry's hash is not the one "
                        "signed (record rewritten and chain recomputed)")
            if self.public_key is not None and not cp.verify(self.public_key):
                return (f"checkpoint signature INVALID at seq {seq} (not signed by this cell's "
                        "record key, or altered)")
            self.cps_ok += 1
        sig = _signature_problem(entry)
        if sig:
            return sig
        if sig == "":
            self.sigs_ok += 1
        elif entry.kind == "signature":
            self.no_content.append(seq)
        if self.prev_ts is not None and entry.ts < self.prev_ts:
            self.regressions.append(seq)
        if self.expected_head is not None and seq == self.expected_head[0]:
            if entry.hash != self.expected_head[1]:
                return f"anchor mismatch at seq {seq} (record rewritten since the anchor)"
            self.anchor_seen = True
        self.count += 1
        self.prev_hash, self.prev_ts = entry.hash, entry.ts
        return None


def _verify_connection(
    conn: sqlite3.Connection,
    expected_head: tuple[int, str] | None = None,
    public_key: Ed25519PublicKey | None = None,
    require_sealed_head: bool = False,
) -> VerifyReport:
    """Walk the chain in ``seq`` order inside one read transaction.

    Every checkpoint must name the hash of the entry at its seq; with ``public_key`` every
    checkpoint signature is verified, and with ``require_sealed_head`` the last entry must be
    covered by a checkpoint (a chain recomputed without the private key, or checkpoints removed,
    fails). Signature entries that store their signed content must hash to their ``record_hash``.
    """
    conn.execute("BEGIN")
    try:
        try:
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        except sqlite3.DatabaseError as exc:
            return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"corrupt file (SQLite: {exc})")
        if problems != ["ok"]:
            return VerifyReport(False, 0, 0, GENESIS_HASH, None,
                                f"corrupt file (SQLite quick_check: {'; '.join(problems)[:500]})")
        try:
            cur = conn.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY seq")
        except sqlite3.DatabaseError as exc:
            return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"not a batch record file: {exc}")
        try:
            checkpoints = _load_checkpoints(conn)
        except sqlite3.DatabaseError as exc:
            return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"checkpoints unreadable: {exc}")
        walk = ChainWalk(checkpoints, public_key, expected_head)
        expected_seq = 1

        def bad(seq: int, problem: str) -> VerifyReport:
            return VerifyReport(False, walk.count, expected_seq - 1, walk.prev_hash, seq, problem,
                                tuple(walk.regressions), walk.cps_ok, False, walk.sigs_ok, tuple(walk.no_content))

        for row in cur:
            seq = row[0]
            if not isinstance(seq, int) or seq < expected_seq:
                return bad(expected_seq, f"chain broken at seq {expected_seq} (reordered or inserted)")
            if seq > expected_seq:
                return bad(expected_seq, f"gap: seq {expected_seq} missing (row removed)")
            try:
                problem = walk.step(_row_to_entry(row))
            except (TypeError, ValueError):
                problem = f"hash mismatch at seq {seq} (row changed)"
            if problem:
                return bad(seq, problem)
            expected_seq = seq + 1
        head = conn.execute("SELECT seq, hash FROM record_head WHERE id = 1").fetchone()
    finally:
        conn.execute("COMMIT")
    last_seq = expected_seq - 1
    count, prev_hash, regressions = walk.count, walk.prev_hash, walk.regressions
    extra = [q for q in checkpoints if q > last_seq]
    if extra:
        return VerifyReport(False, count, last_seq, prev_hash, last_seq + 1,
                            f"signed checkpoint at seq {extra[0]} beyond the last entry {last_seq} (rows removed)",
                            tuple(regressions))
    if require_sealed_head and count and last_seq not in checkpoints:
        signed = max(checkpoints) if checkpoints else 0
        return VerifyReport(False, count, last_seq, prev_hash, signed + 1,
                            f"head seq {last_seq} is not covered by a signed checkpoint (last signed seq "
                            f"{signed}): entries written without the cell key, or checkpoints removed",
                            tuple(regressions))
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            return VerifyReport(
                False,
                count,
                last_seq,
                prev_hash,
                last_seq + 1,
                f"gap: seq {last_seq + 1} missing (row removed)",
                tuple(regressions),
            )
        if head_seq == last_seq and head_hash != prev_hash:
            return VerifyReport(
                False,
                count,
                last_seq,
                prev_hash,
                last_seq,
                f"hash mismatch at seq {last_seq} (row changed)",
                tuple(regressions),
            )
        if head_seq < last_seq:
            return VerifyReport(
                False,
                count,
                last_seq,
                prev_hash,
                head_seq + 1,
                f"chain broken at seq {head_seq + 1} (reordered or inserted)",
                tuple(regressions),
            )
    elif count:
        return VerifyReport(
            False, count, last_seq, prev_hash, 1, "record head missing (file tampered)", tuple(regressions)
        )
    if not walk.anchor_seen:
        assert expected_head is not None
        return VerifyReport(
            False,
            count,
            last_seq,
            prev_hash,
            expected_head[0],
            f"gap: seq {expected_head[0]} missing (row removed)",
            tuple(regressions),
        )
    return VerifyReport(True, count, last_seq, prev_hash, None, "", tuple(regressions), walk.cps_ok,
                        public_key is not None and (count == 0 or last_seq in checkpoints), walk.sigs_ok,
                        tuple(walk.no_content))


def verify_file(
    path: str | os.PathLike[str],
    expected_head: tuple[int, str] | None = None,
    *,
    public_key: Ed25519PublicKey | None = None,
    require_sealed_head: bool | None = None,
) -> VerifyReport:
    """Verify a record file without modifying it (opened read-only): for ``cellctl record verify``.

    Returns a :class:`VerifyReport`; a missing or unreadable file is reported as not ok.
    With ``public_key`` (the cell's record key, :func:`.seal.load_public_key`) the checkpoint
    signatures are verified and, unless ``require_sealed_head`` is False, the head must be signed.
    """
    if require_sealed_head is None:
        require_sealed_head = public_key is not None
    p = Path(path)
    if not p.is_file():
        return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"no such record file: {p}")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"cannot open {p}: {exc}")
    try:
        return _verify_connection(conn, expected_head, public_key, require_sealed_head)
    except sqlite3.DatabaseError as exc:
        return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"corrupt file or not a batch record (SQLite: {exc})")
    finally:
        conn.close()


class BatchRecord:
    """Append-only, hash-chained batch record and audit trail in one SQLite file.

    Args:
        path: the SQLite file (created if missing).
        clock: injected clock; ``clock.now()`` gives epoch-like seconds (ARCHITECTURE rule 5).
        busy_timeout_s: how long a writer waits for another process's write lock.

    Thread-safe: one connection guarded by a lock. Several processes may append to the same
    file; each append runs in ``BEGIN IMMEDIATE`` and reads the head inside it.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Clock, *, busy_timeout_s: float = 30.0,
                 sealer: Sealer | None = None) -> None:
        self.path = Path(path)
        self._clock = clock
        self.sealer = sealer
        """Signs a checkpoint of the head with every commit (:mod:`.seal`); None: unsigned chain."""
        self._lock = threading.RLock()
        self._listeners: list[Callable[[str], None]] = []
        self._wal = Path(f"{self.path}-wal")
        self._wal_size = 0
        self.failures = 0
        """Appends refused by the store since it was opened."""
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        existed = self.path.is_file() and self.path.stat().st_size > 0
        self.open_report: VerifyReport = self._open_check() if existed else VerifyReport(True, 0, 0, GENESIS_HASH)
        """SQLite quick_check and the chain verification of the file as found when it was opened
        (after a crash: once SQLite has replayed the WAL). Not ok: reading works, appends are refused."""
        try:
            if self.open_report.ok:
                self._setup(busy_timeout_s)
        except Exception:
            self._conn.close()
            self._conn = None
            raise
        self._wal_size = self._wal_bytes()

    # ----------------------------------------------------------------- set-up
    def _setup(self, busy_timeout_s: float) -> None:
        conn = self._c
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RecordError(f"{self.path}: cannot switch to WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit
        conn.execute("PRAGMA wal_autocheckpoint = 1")  # every commit checkpointed: a lost WAL loses nothing
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(_SCHEMA):
                conn.execute(statement)
            info = dict(conn.execute("SELECT key, value FROM record_info").fetchall())
            if not info:
                conn.executemany(
                    "INSERT INTO record_info (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", SCHEMA_VERSION),
                        ("hash_scheme", HASH_SCHEME),
                        ("created_at", iso_utc(float(self._clock.now()))),
                    ],
                )
            elif info.get("hash_scheme") != HASH_SCHEME or info.get("schema_version") != SCHEMA_VERSION:
                raise RecordError(
                    f"{self.path}: record schema {info.get('schema_version')!r} / hash scheme "
                    f"{info.get('hash_scheme')!r} not supported by this version"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _open_check(self) -> VerifyReport:
        # this fresh read-write connection replays a WAL left by a crash before reading
        try:
            return _verify_connection(self._c, None, self.sealer.public_key if self.sealer else None)
        except sqlite3.DatabaseError as exc:
            return VerifyReport(False, 0, 0, GENESIS_HASH, None, f"corrupt file (SQLite: {exc})")
        finally:
            if self._c.in_transaction:
                self._c.execute("ROLLBACK")

    def _wal_bytes(self) -> int:
        try:
            return self._wal.stat().st_size
        except OSError:
            return 0

    # ----------------------------------------------------------------- health
    def add_failure_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(reason)`` is called (inside the failing append, before it raises) for every
        append the store could not commit. A listener must only note the failure, not append."""
        self._listeners.append(listener)

    def health(self) -> str:
        """"" while the record can be extended; else why not (integrity check failed on open)."""
        if not self.open_report.ok:
            return f"{self.path}: record failed its integrity check when opened: {self.open_report.problem}"
        return ""

    def check(self) -> VerifyReport:
        """Verify the file as it is on disk now (a separate read-only connection, so nothing this
        connection holds in its cache hides a damaged file)."""
        return verify_file(self.path)

    def _wal_shrank(self) -> str:
        size = self._wal_bytes()
        if size >= self._wal_size:
            return ""
        before, self._wal_size = self._wal_size, size
        return (f"the WAL file shrank from {before} to {size} bytes under the open record (truncated or "
                "removed); committed entries were checkpointed, verify the file")

    def probe(self) -> str:
        """A cheap check between appends (the supervisor calls it every tick): "" while nothing is
        wrong; else the reason, also given to the failure listeners (a truncated WAL is found
        within a tick, not only at the next append)."""
        with self._lock:
            if self._conn is None:
                return ""
            shrank = self._wal_shrank()
            if shrank:
                self._failed("(between appends)", RecordError(shrank))
            return shrank

    def _failed(self, what: str, exc: BaseException) -> RecordWriteError:
        self.failures += 1
        reason = f"batch record {self.path}: {what}{'' if what.startswith('(') else ' not written'}: {exc}"
        for listener in list(self._listeners):
            try:
                listener(reason)
            except Exception:  # noqa: BLE001 - a listener's bug must not hide the failure
                pass
        return RecordWriteError(reason)

    @property
    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RecordError(f"batch record {self.path} is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> BatchRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pragmas(self) -> dict[str, Any]:
        """journal_mode and synchronous of this record's connection (2 = FULL)."""
        with self._lock:
            return {
                "journal_mode": self._c.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": self._c.execute("PRAGMA synchronous").fetchone()[0],
            }

    # ----------------------------------------------------------------- writing
    def append(
        self,
        kind: str,
        *,
        batch_id: str,
        actor: str,
        role: str = "",
        action: str = "",
        reason: str = "",
        payload: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Append one entry and return it (committed and fsync'ed when this returns).

        Raises:
            ValueError: unknown ``kind``, empty ``actor``, a non-string text field, or a payload
                that is not a JSON object of finite values (NaN/inf are refused). Nothing is
                written in that case.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
        texts = {"batch_id": batch_id, "actor": actor, "role": role, "action": action, "reason": reason}
        for name, value in texts.items():
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {type(value).__name__}")
        if not actor.strip():
            raise ValueError("actor must name a user id or 'system' (ALCOA+: attributable)")
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise ValueError(f"payload must be a mapping (JSON object), got {type(payload).__name__}")
        payload_json = canonical_json(dict(payload))
        with self._lock:
            conn = self._c
            what = f"{kind} {action or ''}".strip()
            bad = self.health()
            if bad:
                raise self._failed(what, RecordError(bad))
            shrank = self._wal_shrank()
            if shrank:
                raise self._failed(what, RecordError(shrank))
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failed(what, exc) from exc
            try:
                row = conn.execute(_CLOSED_SQL, (batch_id,)).fetchone()
                closed = closed_refusal(batch_id, (int(row[0]), str(row[1])) if row else None, kind, action,
                                        payload)
                if closed is not None:
                    raise closed
                ts = float(self._clock.now())
                ts_iso = iso_utc(ts)
                head = conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
                digest = entry_hash(
                    seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload_json, prev_hash
                )
                conn.execute(
                    f"INSERT INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
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
                        digest,
                    ),
                )
                conn.execute(
                    "INSERT INTO record_head (id, seq, hash) VALUES (1, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    (seq, digest),
                )
                if self.sealer is not None:
                    cp = self.sealer.checkpoint(seq, digest, ts_iso)
                    conn.execute(
                        "INSERT INTO checkpoints (seq, hash, signed_at, key_id, signature) VALUES (?,?,?,?,?)",
                        (cp.seq, cp.hash, cp.signed_at, cp.key_id, cp.signature),
                    )
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(exc, (sqlite3.Error, OSError)):
                    raise self._failed(what, exc) from exc
                raise
            self._wal_size = self._wal_bytes()
        return Entry(
            seq,
            ts,
            ts_iso,
            batch_id,
            kind,
            actor,
            role,
            action,
            reason,
            json.loads(payload_json),
            payload_json,
            prev_hash,
            digest,
        )

    def correct(
        self, original_seq: int, *, actor: str, role: str, reason: str, changes: Mapping[str, tuple[Any, Any]]
    ) -> Entry:
        """Record a correction of entry ``original_seq``: ``changes`` maps field -> (old, new).

        The original stays as it was (previous values never obscured, Part 11 §11.10(e));
        printouts flag it as changed later and point to this entry.

        Raises:
            ValueError: no such entry, no reason given, or no changes.
        """
        if not reason.strip():
            raise ValueError("a correction needs a reason (Annex 11 §9)")
        if not changes:
            raise ValueError("a correction needs at least one changed field")
        original = self.get(original_seq)
        if original is None:
            raise ValueError(f"no entry with seq {original_seq} to correct")
        payload = {
            "corrects_seq": original.seq,
            "corrects_hash": original.hash,
            "changes": {k: {"old": v[0], "new": v[1]} for k, v in changes.items()},
        }
        return self.append(
            "correction",
            batch_id=original.batch_id,
            actor=actor,
            role=role,
            action="record.correct",
            reason=reason,
            payload=payload,
        )

    def record_cycle_result(
        self, kind: str, result: Mapping[str, Any], *, batch_id: str, actor: str = "system", role: str = ""
    ) -> Entry:
        """Record a VHP or autoclave cycle result (Annex 1 §8.50 [ANNEX1-2022], [EN285-2015 §6.5], IL-10).

        ``result`` must hold ``result`` = "PASS" or "FAIL" and an identifier of the run
        (``run_id``); recommended keys: recipe/program id and version, phase start/end times,
        key values (injected mass, peak ppm, aeration end ppm / F0, temperatures), failures.

        Raises:
            ValueError: unknown cycle kind, missing/invalid ``result`` or ``run_id``, or a
                non-finite value anywhere.
        """
        if kind not in ("vhp", "autoclave"):
            raise ValueError(f"cycle kind must be 'vhp' or 'autoclave', got {kind!r}")
        verdict = result.get("result")
        if verdict not in ("PASS", "FAIL"):
            raise ValueError(f"cycle result must be 'PASS' or 'FAIL', got {verdict!r}")
        run_id = result.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError("cycle result needs a non-empty 'run_id'")
        payload = {"cycle": kind, **dict(result)}
        reason = str(result.get("reason", "")) if verdict == "FAIL" else ""
        return self.append(
            "cycle_result",
            batch_id=batch_id,
            actor=actor,
            role=role,
            action=f"{kind}.cycle_{verdict.lower()}",
            reason=reason,
            payload=payload,
        )

    # ----------------------------------------------------------------- reading
    def get(self, seq: int) -> Entry | None:
        with self._lock:
            row = self._c.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq = ?", (seq,)).fetchone()
        return _row_to_entry(row) if row else None

    def entries(self, batch_id: str | None = None, kinds: Iterable[str] | None = None) -> list[Entry]:
        """Entries in ``seq`` order, optionally only one batch and/or some kinds."""
        sql, args = f"SELECT {_COLUMNS} FROM entries", []
        where = []
        if batch_id is not None:
            where.append("batch_id = ?")
            args.append(batch_id)
        if kinds is not None:
            kinds = list(kinds)
            if not kinds:
                return []
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        with self._lock:
            rows = self._c.execute(sql, args).fetchall()
        return [_row_to_entry(r) for r in rows]

    def closing(self, batch_id: str) -> tuple[int, str] | None:
        """(seq, action) of the batch's last ``disposition`` entry or post-release correction."""
        with self._lock:
            row = self._c.execute(_CLOSED_SQL, (batch_id,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, 64 zeros) when empty."""
        with self._lock:
            row = self._c.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def __len__(self) -> int:
        with self._lock:
            return int(self._c.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def checkpoints(self) -> list[Checkpoint]:
        """The signed checkpoints in seq order."""
        with self._lock:
            return list(_load_checkpoints(self._c).values())

    def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyReport:
        """Recompute every hash and link; report the first problem with its seq.

        Args:
            expected_head: optional external anchor ``(seq, hash)`` noted earlier (printed
                export, signature): the entry at that seq must still have that hash.
        """
        if expected_head is not None and not is_sha256_hex(expected_head[1]):
            raise ValueError("expected_head hash must be 64 lowercase hex digits")
        with self._lock:
            key = self.sealer.public_key if self.sealer else None
            return _verify_connection(self._c, expected_head, key, key is not None)

    # ----------------------------------------------------------------- export
    def export_json(self, batch_id: str) -> str:
        """Electronic copy of one batch's entries (Part 11 §11.10(b)) with the chain status."""
        from .render import export_json

        return export_json(self, batch_id)

    def render_text(self, batch_id: str) -> str:
        """Human-readable (Markdown) printout of one batch's entries (Part 11 §11.10(b), §11.50)."""
        from .render import render_text

        return render_text(self, batch_id)

    @property
    def clock(self) -> Clock:
        return self._clock


def _split_sql(script: str) -> list[str]:
    """Split the schema script into statements (triggers contain inner ';')."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text and sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    if "\n".join(buf).strip():
        raise RecordError("internal: incomplete schema statement")
    return out
