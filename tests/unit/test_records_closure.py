"""A released or rejected batch is closed in the store itself (issue 15 item 4), on both backends
(SQLite file and a PostgreSQL chain of a real throwaway server, as test_records.py): every append
to it is refused — by the store's check and, below it, by the database's own trigger — except a
signed post-release correction, which reopens it; other batches of the same record stay open."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid

import pytest

from aseptic_cell.records import POST_RELEASE_CORRECTION, BatchRecord, RecordClosedError, RecordWriteError

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(scope="module")
def pg_server():
    from aseptic_cell.records.pg import install_schema
    from aseptic_cell.records.pgserver import ADMIN_ROLE, WRITER_ROLE, TempPostgres, pg_bindir

    if pg_bindir() is None:
        pytest.fail("PostgreSQL server not installed: run scripts/ensure_system_deps.sh (Debian postgresql)")
    with TempPostgres() as pg:
        install_schema(pg.dsn(ADMIN_ROLE), WRITER_ROLE)
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def rec(request, tmp_path):
    if request.param == "sqlite":
        r = BatchRecord(tmp_path / "c.db", Clock())
    else:
        from aseptic_cell.records.pg import PgBatchRecord

        r = PgBatchRecord(request.getfixturevalue("pg_server").dsn(), f"closure-{uuid.uuid4().hex[:8]}", Clock())
    with r:
        yield r


def _signature(content: str) -> dict:
    return {"user_id": "qa1", "meaning": "responsibility", "record_hash": hashlib.sha256(content.encode()).hexdigest(),
            "signed_content": content}


def _released(rec, decision: str = "release") -> None:
    rec.append("note", batch_id="B-1", actor="op1", action="note.add", reason="work")
    rec.append("disposition", batch_id="B-1", actor="qa1", role="qa", action=f"disposition.{decision}",
               reason=decision, payload={"decision": decision})


@pytest.mark.parametrize("decision", ["release", "reject"])
def test_a_dispositioned_batch_refuses_every_append_in_the_store(rec, decision):
    _released(rec, decision)
    head = rec.head()
    for kind, action in (("note", "note.add"), ("deviation", "deviation.raise"), ("signature", "record.review"),
                         ("disposition", "disposition.release"), ("correction", "record.correct")):
        with pytest.raises(RecordClosedError, match=f"B-1 was {decision}d by QA"):
            rec.append(kind, batch_id="B-1", actor="qa1", action=action, reason="after the disposition")
    assert rec.head() == head and rec.failures == 0  # a refusal, not a store failure
    rec.append("note", batch_id="B-2", actor="op1", action="note.add", reason="another batch stays open")
    rec.append("note", batch_id="", actor="system", action="note.add", reason="cell-level entries too")
    assert rec.closing("B-1")[1] == f"disposition.{decision}" and rec.closing("B-2") is None
    assert rec.verify().ok


def test_the_closure_survives_reopening_the_store(rec, tmp_path):
    _released(rec)
    if isinstance(rec, BatchRecord):
        rec.close()
        again = BatchRecord(rec.path, Clock())
    else:
        from aseptic_cell.records.pg import PgBatchRecord

        rec.close()
        again = PgBatchRecord(rec.dsn, rec.chain, Clock())
    with again:
        with pytest.raises(RecordClosedError):
            again.append("note", batch_id="B-1", actor="op1", action="note.add", reason="after reopening")


def test_only_a_correctly_signed_post_release_correction_is_taken_and_it_reopens_the_batch(rec):
    _released(rec)
    for bad in ({}, {"signature": "qa1"}, {"signature": {**_signature("{}"), "signed_content": "{\"x\":1}"}},
                {"signature": {**_signature("{}"), "user_id": ""}}):
        with pytest.raises(RecordClosedError):
            rec.append("correction", batch_id="B-1", actor="qa1", action=POST_RELEASE_CORRECTION, reason="c",
                       payload=bad)
    with pytest.raises(RecordClosedError):  # the right payload under another kind is no correction
        rec.append("note", batch_id="B-1", actor="qa1", action=POST_RELEASE_CORRECTION, reason="c",
                   payload={"signature": _signature("{}")})
    rec.append("correction", batch_id="B-1", actor="qa1", action=POST_RELEASE_CORRECTION, reason="lot typo",
               payload={"corrects_seq": 1, "signature": _signature('{"batch":"B-1"}')})
    assert rec.closing("B-1")[1] == POST_RELEASE_CORRECTION
    rec.append("note", batch_id="B-1", actor="qa1", action="note.add", reason="reopened: appendable")
    rec.append("disposition", batch_id="B-1", actor="qa1", action="disposition.release", reason="again")
    with pytest.raises(RecordClosedError):
        rec.append("note", batch_id="B-1", actor="qa1", action="note.add", reason="closed again")
    assert rec.verify().ok


def test_the_database_trigger_refuses_an_insert_that_bypasses_the_store_check(rec, tmp_path):
    """A writer that skips the Python check (its own code, an SQL console) meets the trigger."""
    from aseptic_cell.records.canonical import entry_hash, iso_utc

    _released(rec)
    seq, prev = rec.head()
    ts = T0 + 100.0
    row = (seq + 1, ts, iso_utc(ts), "B-1", "note", "op1", "", "note.add", "sneaked in", "{}", prev)
    digest = entry_hash(*row)
    if isinstance(rec, BatchRecord):
        raw = sqlite3.connect(str(rec.path), isolation_level=None)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="closed"):
                raw.execute("INSERT INTO entries (seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, "
                            "payload, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (*row, digest))
        finally:
            raw.close()
    else:
        import psycopg

        with psycopg.connect(rec.dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="closed"):
                conn.execute("INSERT INTO record_entries (chain, seq, ts, ts_iso, batch_id, kind, actor, role, "
                             "action, reason, payload, prev_hash, hash) VALUES "
                             "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", (rec.chain, *row, digest))
    assert rec.head() == (seq, prev) and rec.verify().ok


def test_a_closed_batch_is_not_a_store_failure_for_the_listeners(rec):
    told: list[str] = []
    rec.add_failure_listener(told.append)
    _released(rec)
    with pytest.raises(RecordClosedError) as e:
        rec.append("note", batch_id="B-1", actor="op1", action="note.add")
    assert not isinstance(e.value, RecordWriteError) and told == []
