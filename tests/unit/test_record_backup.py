"""Backup, restore and retention of the batch record (issue 15 item 8): an online backup with
the SQLite backup API while a writer appends, verified as `cellctl record verify` does; restore
-> verify -> the same head hash; damaged copies refused; deletion refused within retention."""

from __future__ import annotations

import io
import shutil
import sqlite3
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from aseptic_cell.cli import main as cellctl
from aseptic_cell.config import default_config_dir
from aseptic_cell.records import BatchRecord, verify_file
from aseptic_cell.records.backup import (
    BackupError,
    RetentionError,
    RetentionPolicy,
    backup_record,
    delete_record,
    load_retention,
    restore_record,
    retention_status,
)
from aseptic_cell.records.seal import init_seal_key, load_public_key, load_sealer

YEAR = 365.25 * 86400.0


class _Clock:
    def __init__(self, t: float = 1.8e9) -> None:
        self.t = t

    def now(self) -> float:
        self.t += 0.001
        return self.t


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cellctl(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    return init_seal_key(tmp_path / "keys")


def _record(path: Path, keys: Path, n: int = 30) -> BatchRecord:
    rec = BatchRecord(path, _Clock(), sealer=load_sealer(keys))
    for i in range(n):
        rec.append("note", batch_id="B1", actor="op1", reason=f"entry {i}", payload={"i": i})
    return rec


def test_online_backup_while_a_writer_appends_then_restore_gives_the_same_head(tmp_path, keys):
    src = tmp_path / "cell.db"
    rec = _record(src, keys)
    writer = BatchRecord(src, _Clock(2e9), sealer=load_sealer(keys))  # a second connection: the cell
    stop, started = threading.Event(), threading.Event()
    written: list[int] = []

    def append_forever() -> None:
        while not stop.is_set():
            written.append(writer.append("note", batch_id="B1", actor="system", reason="tick").seq)
            if len(written) == 5:
                started.set()

    t = threading.Thread(target=append_forever, daemon=True)
    t.start()
    try:
        assert started.wait(120)
        first = len(written)
        report = backup_record(src, tmp_path / "backup.db", key=keys)
    finally:
        stop.set()
        t.join(120)
    assert not t.is_alive()
    assert report.ok and report.verdict.sealed and report.verdict.count >= 30 + first
    assert writer.failures == 0 and rec.verify().ok  # the writer was never disturbed
    src_head = writer.head()
    assert src_head[0] >= report.verdict.head_seq
    at_head = writer.get(report.verdict.head_seq)
    assert at_head is not None and at_head.hash == report.verdict.head_hash  # a committed head of the source
    # same verdict as `cellctl record verify`
    code, out, _ = _run("record", "verify", str(tmp_path / "backup.db"), "--key", str(keys))
    assert code == 0 and out.strip() == str(report.verdict)
    # restore -> verify -> same head hash; the restored record is usable
    restored = restore_record(tmp_path / "backup.db", tmp_path / "restored.db", key=keys)
    assert restored.ok and restored.verdict.head_hash == report.verdict.head_hash
    assert restored.verdict.head_seq == report.verdict.head_seq
    again = BatchRecord(tmp_path / "restored.db", _Clock(3e9), sealer=load_sealer(keys))
    assert again.open_report.ok and again.head() == (report.verdict.head_seq, report.verdict.head_hash)
    again.append("note", batch_id="B1", actor="op1", reason="after restore")
    assert verify_file(tmp_path / "restored.db", public_key=load_public_key(keys)).ok
    for r in (again, writer, rec):
        r.close()


def _tamper(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET reason = 'rewritten' WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()


def test_backup_and_restore_refuse_a_damaged_record_and_leave_nothing(tmp_path, keys):
    src = tmp_path / "cell.db"
    _record(src, keys, 10).close()
    backup_record(src, tmp_path / "b1.db", key=keys)
    with pytest.raises(BackupError, match="exists; a backup never overwrites"):
        backup_record(src, tmp_path / "b1.db", key=keys)
    with pytest.raises(BackupError, match="no public record key"):
        backup_record(src, tmp_path / "b2.db", key=tmp_path / "no-such-keys")
    # a damaged backup is not restored
    damaged = tmp_path / "damaged.db"
    shutil.copy(tmp_path / "b1.db", damaged)
    _tamper(damaged, 4)
    with pytest.raises(BackupError, match="does not verify, nothing restored.*seq 4"):
        restore_record(damaged, tmp_path / "r.db", key=keys)
    assert not (tmp_path / "r.db").exists()
    with pytest.raises(BackupError, match="exists; a restore never overwrites"):
        restore_record(tmp_path / "b1.db", src, key=keys)
    # a damaged source gives no backup
    _tamper(src, 7)
    code, _, err = _run("record", "backup", str(src), str(tmp_path / "b3.db"), "--key", str(keys))
    assert code == 1 and "backup REFUSED: the copy does not verify" in err and "seq 7" in err
    assert not (tmp_path / "b3.db").exists() and not (tmp_path / "b3.db.tmp").exists()


def test_cli_backup_and_restore(tmp_path, keys):
    src = tmp_path / "cell.db"
    _record(src, keys, 5).close()
    code, out, err = _run("record", "backup", str(src), str(tmp_path / "b.db"), "--key", str(keys))
    assert code == 0 and out.startswith("backup OK:") and "record OK: 5 entries" in out, err
    code, out, err = _run("record", "restore", str(tmp_path / "b.db"), str(tmp_path / "r.db"), "--key", str(keys))
    assert code == 0 and "restore OK:" in out, err
    assert verify_file(tmp_path / "r.db").head_hash == verify_file(src).head_hash


# ----------------------------------------------------------------------------- retention
def test_retention_policy_from_record_yaml_is_checked_against_coi(tmp_path):
    assert load_retention(default_config_dir()).years == 30
    d = tmp_path / "config"
    d.mkdir()
    shutil.copy(default_config_dir() / "coi.yaml", d / "coi.yaml")
    (d / "record.yaml").write_text("record: {backend: sqlite}\nretention: {years: 5}\n")
    with pytest.raises(RetentionError, match="shorter than coi.yaml record_retention_years EU: 30"):
        load_retention(d)
    (d / "record.yaml").write_text("record: {backend: sqlite}\nretention: {years: 0}\n")
    with pytest.raises(RetentionError, match="whole number of years >= 1"):
        load_retention(d)
    (d / "record.yaml").write_text("record: {backend: sqlite}\n")
    with pytest.raises(RetentionError, match="got None"):
        load_retention(d)


def test_deletion_is_refused_within_retention_and_reported(tmp_path, keys):
    src = tmp_path / "cell.db"
    rec = _record(src, keys, 3)
    third = rec.get(3)
    assert third is not None
    last = third.ts
    rec.close()
    policy = RetentionPolicy(30, "record.yaml")
    with pytest.raises(RetentionError, match="deletion refused.*WITHIN retention"):
        delete_record(src, policy, last + 29 * YEAR)
    assert src.is_file() and verify_file(src).count == 3
    code, _, err = _run("record", "delete", str(src))  # the shipped policy: 30 years
    assert code == 1 and "deletion refused" in err and src.is_file()
    code, out, _ = _run("record", "retention", str(src))
    assert code == 0 and "retention 30 years" in out and "WITHIN retention (deletion refused)" in out
    st = retention_status(src, policy, last + 31 * YEAR)
    assert not st.within and st.retain_until is not None and st.last_entry is not None
    assert st.retain_until.year == st.last_entry.year + 30
    delete_record(src, policy, last + 31 * YEAR)
    assert not src.exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert retention_status(junk, policy, last + 99 * YEAR).within  # unreadable: kept
    with pytest.raises(RetentionError):
        delete_record(junk, policy, last + 99 * YEAR)
