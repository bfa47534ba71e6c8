"""Record integrity beyond the unkeyed hash chain (issue 15 item 5): checkpoints signed with the
cell's Ed25519 record key, the signed head exported for an external anchor, and e-signatures
whose signed content is stored and re-verified (21 CFR 11.10(e), 11.70 [CFR11]; Annex 11 §7.1
[ANNEX11-2011]). Real SQLite files, real Ed25519 keys (in a temp security directory)."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from aseptic_cell.records import BatchRecord, entry_hash, verify_file
from aseptic_cell.records.cli import add_record_parser
from aseptic_cell.records.seal import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    init_seal_key,
    load_public_key,
    load_sealer,
)

T0 = 1_790_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        self.t += 1.25
        return self.t


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    return init_seal_key(tmp_path / "security")


def _cellctl(*argv: str) -> tuple[int, str, str]:
    import io

    parser = argparse.ArgumentParser(prog="cellctl")
    add_record_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    rc = args.func(args, out, err)
    return rc, out.getvalue(), err.getvalue()


def _sealed_record(path: Path, keydir: Path, n: int = 8) -> None:
    with BatchRecord(path, FakeClock(), sealer=load_sealer(keydir)) as rec:
        for i in range(n):
            rec.append("note", batch_id="B-7", actor="op1", role="operator", action="note.add",
                       reason=f"step {i}", payload={"i": i, "volume_ml": 50.0 + i})


def _rewrite_and_recompute(path: Path, seq: int, new_reason: str) -> None:
    """What someone with write access to the file (but not the cell's private key) can do: drop
    the triggers, change an entry and recompute the whole chain with the public algorithm."""
    con = sqlite3.connect(str(path), isolation_level=None)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.execute("UPDATE entries SET reason = ? WHERE seq = ?", (new_reason, seq))
    rows = con.execute("SELECT seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload "
                       "FROM entries ORDER BY seq").fetchall()
    prev = "0" * 64
    for r in rows:
        digest = entry_hash(*r, prev)
        con.execute("UPDATE entries SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, r[0]))
        prev = digest
    con.execute("UPDATE record_head SET seq = ?, hash = ? WHERE id = 1", (rows[-1][0], prev))
    con.close()


def _chain_only_ok(path: Path) -> bool:
    """The unkeyed check (what verify did before the signed checkpoints): every hash recomputes
    and links to the previous one, and record_head names the last entry."""
    con = sqlite3.connect(str(path))
    rows = con.execute("SELECT seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload, "
                       "prev_hash, hash FROM entries ORDER BY seq").fetchall()
    head = con.execute("SELECT seq, hash FROM record_head").fetchone()
    con.close()
    prev = "0" * 64
    for r in rows:
        if r[10] != prev or entry_hash(*r[:10], prev) != r[11]:
            return False
        prev = r[11]
    return tuple(head) == (rows[-1][0], prev)


def test_key_pair_created_once_private_half_not_world_readable(tmp_path):
    d = init_seal_key(tmp_path / "sec")
    pub = (d / PUBLIC_NAME).read_bytes()
    assert ((d / PRIVATE_NAME).stat().st_mode & 0o077) == 0
    init_seal_key(d)  # idempotent: the existing key is kept
    assert (d / PUBLIC_NAME).read_bytes() == pub
    assert load_sealer(tmp_path / "none") is None and load_public_key(tmp_path / "none") is None


def test_every_commit_writes_a_signed_checkpoint_of_the_head(tmp_path, keydir):
    path = tmp_path / "r.db"
    _sealed_record(path, keydir, 5)
    key = load_public_key(keydir)
    with BatchRecord(path, FakeClock()) as rec:
        cps = rec.checkpoints()
        assert [c.seq for c in cps] == [1, 2, 3, 4, 5]
        assert all(c.verify(key) for c in cps) and cps[-1].hash == rec.head()[1]
    report = verify_file(path, public_key=key)
    assert report.ok and report.sealed and report.checkpoints == 5, report
    rc, out, _ = _cellctl("record", "verify", str(path), "--key", str(keydir))
    assert rc == 0 and "5 signed checkpoints verified, head signed" in out


def test_rewritten_record_with_recomputed_chain_detected_by_cellctl_record_verify(tmp_path, keydir):
    """Must show (issue 15): the rewrite recomputes every hash, so the unkeyed chain check (all
    that `cellctl record verify` did before this change) passes; the signed checkpoints fail it."""
    path = tmp_path / "rewritten.db"
    _sealed_record(path, keydir)
    assert _cellctl("record", "verify", str(path), "--key", str(keydir))[0] == 0
    _rewrite_and_recompute(path, 3, "step 3 (nothing went wrong here)")
    assert _chain_only_ok(path)  # the unkeyed chain is consistent again after the recomputation
    rc, _, err = _cellctl("record", "verify", str(path), "--key", str(keydir))
    assert rc == 1
    assert "record INVALID: signed checkpoint mismatch at seq 3" in err


def test_removing_the_checkpoints_too_leaves_the_head_unsigned(tmp_path, keydir):
    path = tmp_path / "r.db"
    _sealed_record(path, keydir)
    _rewrite_and_recompute(path, 2, "edited")
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("DELETE FROM checkpoints")
    con.close()
    rc, _, err = _cellctl("record", "verify", str(path), "--key", str(keydir))
    assert rc == 1 and "head seq 8 is not covered by a signed checkpoint" in err


def test_checkpoints_signed_with_another_key_are_refused(tmp_path, keydir):
    path = tmp_path / "r.db"
    other = init_seal_key(tmp_path / "forger")
    _sealed_record(path, other)  # a forger's key re-signing a rewritten chain
    rc, _, err = _cellctl("record", "verify", str(path), "--key", str(keydir))
    assert rc == 1 and "checkpoint signature INVALID at seq 1" in err


def test_verify_without_a_public_key_fails_loudly_unless_asked_for_the_chain_only(tmp_path, keydir):
    path = tmp_path / "r.db"
    _sealed_record(path, keydir, 3)
    rc, _, err = _cellctl("record", "verify", str(path), "--key", str(tmp_path / "nokey"))
    assert rc == 1 and "no public record key" in err
    rc, out, _ = _cellctl("record", "verify", str(path), "--key", str(tmp_path / "nokey"), "--unsealed-ok")
    assert rc == 0 and "signatures NOT checked" in out


def test_anchor_exports_the_signed_head_and_verify_checks_it_later(tmp_path, keydir):
    path, anchor = tmp_path / "r.db", tmp_path / "anchor.json"
    _sealed_record(path, keydir, 4)
    rc, out, _ = _cellctl("record", "anchor", str(path), "--key", str(keydir), "-o", str(anchor))
    assert rc == 0
    doc = json.loads(anchor.read_text())
    assert doc == json.loads(out) and doc["seq"] == 4 and doc["signature_verified"] is True
    assert len(doc["signature"]) == 128 and doc["key_id"] == load_sealer(keydir).key_id  # type: ignore[union-attr]
    assert _cellctl("record", "verify", str(path), "--key", str(keydir), "--anchor", str(anchor))[0] == 0
    _rewrite_and_recompute(path, 4, "edited")
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("DELETE FROM checkpoints WHERE seq >= 4")  # hide the mismatching checkpoint
    con.close()
    rc, _, err = _cellctl("record", "verify", str(path), "--key", str(keydir), "--anchor", str(anchor),
                          "--unsealed-ok")
    assert rc == 1 and "anchor mismatch at seq 4" in err


def test_e_signature_content_is_stored_and_reverified(tmp_path, keydir):
    """§11.70: the signed hash covers content stored with the signature; a changed content (with
    a recomputed chain) is found, a signature without stored content is a warning."""
    from aseptic_cell.auth.directory import Signature
    from aseptic_cell.supervisor.signing import Signing, subject_hash

    path = tmp_path / "s.db"
    rec = BatchRecord(path, FakeClock(), sealer=load_sealer(keydir))
    subject = subject_hash({"batch": "B-7", "command": "start", "user": "qa1", "reason": "go"})
    sig = Signature("qa1", "Q. A. One", "qa", "approval", subject, T0, "2026-09-21T14:13:20+00:00", "batch.start")
    Signing(None, rec).record_signature(sig, batch_id="B-7", reason="go")
    entry = rec.entries(kinds=["signature"])[0]
    assert entry.payload["record_hash"] == subject
    assert json.loads(entry.payload["signed_content"])["command"] == "start"
    report = rec.verify()
    assert report.ok and report.signatures_checked == 1 and report.sealed
    rec.close()
    # the content changed afterwards and the chain recomputed (checked without the key: the
    # content check alone finds it)
    con = sqlite3.connect(str(path), isolation_level=None)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    payload = json.loads(con.execute("SELECT payload FROM entries WHERE seq = 1").fetchone()[0])
    payload["signed_content"] = payload["signed_content"].replace("start", "abort")
    from aseptic_cell.records import canonical_json

    con.execute("UPDATE entries SET payload = ? WHERE seq = 1", (canonical_json(payload),))
    r = con.execute("SELECT seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload "
                    "FROM entries WHERE seq = 1").fetchone()
    digest = entry_hash(*r, "0" * 64)
    con.execute("UPDATE entries SET hash = ? WHERE seq = 1", (digest,))
    con.execute("UPDATE record_head SET hash = ? WHERE id = 1", (digest,))
    con.execute("DELETE FROM checkpoints")
    con.close()
    report = verify_file(path)
    assert not report.ok and "e-signature at seq 1" in report.problem and "11.70" in report.problem


def test_signature_without_stored_content_is_reported(tmp_path):
    from aseptic_cell.auth.directory import Signature, record_signature

    path = tmp_path / "w.db"
    with BatchRecord(path, FakeClock()) as rec:
        sig = Signature("qa1", "Q. A. One", "qa", "approval", "a" * 64, T0, "2026-09-21T14:13:20+00:00", "x")
        record_signature(rec, sig, batch_id="B-7")
        report = rec.verify()
    assert report.ok and report.signatures_without_content == (1,)
    assert "WARNING e-signatures without stored content at seq 1" in str(report)
