"""Backup, restore and retention of the SQLite batch record (issue 15 item 8; 21 CFR 11.10(c)
[CFR11]: records protected and retrievable throughout their retention period; Annex 11 §7.2
[ANNEX11-2011]: regular back-ups, their integrity and the ability to restore checked).

* :func:`backup_record` copies a record file **online** with SQLite's backup API while the cell
  keeps appending: one backup step over all pages (``pages=-1``) runs inside one read
  transaction of the WAL-mode source, so the copy is a consistent snapshot of a committed head and
  the writer is never blocked. The copy is written to ``DEST.tmp``, fsync'ed, switched to a
  rollback journal (a self-contained single file), then verified exactly as ``cellctl record
  verify`` does (chain walk, signed checkpoints with the cell's public record key, e-signature
  content hashes); its head must also be an entry of the live source (same seq, same hash). Only
  a copy that verifies is renamed to ``DEST``; an existing ``DEST`` is never overwritten.
* :func:`restore_record` verifies a backup, copies it to a new file with the same API, verifies
  the restored file and checks that its head hash is the backup's.
* Retention: ``config/record.yaml`` ``retention: {years: N}`` [M] (not shorter than the longest
  market retention of ``coi.yaml`` COI-40). A record's retention runs from its last entry;
  :func:`delete_record` refuses to delete a record within it, :func:`retention_report` lists each
  record with its retain-until date.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .seal import load_public_key
from .store import RecordError, VerifyReport, verify_file


class BackupError(RecordError):
    """A backup or restore could not be made or did not verify (nothing left at DEST)."""


class RetentionError(RecordError):
    """Deleting the record is refused (within its retention period), or the policy is invalid."""


@dataclass(frozen=True)
class BackupReport:
    source: str
    dest: str
    verdict: VerifyReport
    """The copy's verification: what ``cellctl record verify DEST`` reports."""
    source_head_hash: str
    """The live source's hash of the entry at the copy's head seq (equal to the copy's head hash)."""

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.source_head_hash == self.verdict.head_hash

    def __str__(self) -> str:
        return (f"backup {self.dest} of {self.source}: {self.verdict}"
                + ("" if self.ok else f"; source entry at seq {self.verdict.head_seq} has hash "
                   f"{self.source_head_hash or '(none)'}"))


def _key(key: Any, unsealed_ok: bool) -> tuple[Any, bool]:
    """(public key, require a signed head) as ``cellctl record verify`` chooses them."""
    pub = load_public_key(key) if key is None or isinstance(key, (str, os.PathLike)) else key
    if pub is None and not unsealed_ok:
        raise BackupError("no public record key (record_seal.pub) to verify the signed checkpoints of the copy; "
                          "give --key, or --unsealed-ok for the chain only")
    return pub, pub is not None and not unsealed_ok


def _copy(src: Path, tmp: Path) -> None:
    """The backup API, one step over every page (a consistent snapshot), then fsync."""
    s = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
    try:
        d = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            s.backup(d, pages=-1)
            d.execute("PRAGMA journal_mode = DELETE")  # a self-contained single file
        finally:
            d.close()
    finally:
        s.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry_hash(path: Path, seq: int) -> str:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        row = conn.execute("SELECT hash FROM entries WHERE seq = ?", (seq,)).fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else ""


def _install(tmp: Path, dest: Path) -> None:
    os.replace(tmp, dest)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable
    finally:
        os.close(fd)


def backup_record(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, key: Any = None,
                  unsealed_ok: bool = False) -> BackupReport:
    """Online backup of the record file ``source`` to ``dest`` (new file), verified.

    Args:
        key: the cell's public record key (PEM file, directory, a key object); default the
            security directory's ``record_seal.pub``.
        unsealed_ok: accept a copy without signed checkpoints (chain and signatures only).

    Raises:
        BackupError: ``dest`` exists, the source is missing, or the copy does not verify (the
            partial copy is removed; the report is in the message).
    """
    src, out = Path(source), Path(dest)
    if not src.is_file():
        raise BackupError(f"no such record file: {src}")
    if out.exists():
        raise BackupError(f"{out} exists; a backup never overwrites a file")
    pub, sealed = _key(key, unsealed_ok)
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        _copy(src, tmp)
        verdict = verify_file(tmp, public_key=pub, require_sealed_head=sealed)
        report = BackupReport(str(src), str(out), verdict, _entry_hash(src, verdict.head_seq) if verdict.head_seq
                              else verdict.head_hash)
        if not report.ok:
            raise BackupError(f"the copy does not verify: {report}")
        _install(tmp, out)
        return report
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {src} failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def restore_record(backup: str | os.PathLike[str], dest: str | os.PathLike[str], *, key: Any = None,
                   unsealed_ok: bool = False) -> BackupReport:
    """Restore ``backup`` to the new file ``dest``: the backup verified first, the restored file
    verified after, and its head hash equal to the backup's.

    Raises:
        BackupError: ``dest`` exists, the backup does not verify, or the restored file differs.
    """
    src, out = Path(backup), Path(dest)
    if out.exists():
        raise BackupError(f"{out} exists; a restore never overwrites a record")
    pub, sealed = _key(key, unsealed_ok)
    before = verify_file(src, public_key=pub, require_sealed_head=sealed)
    if not before.ok:
        raise BackupError(f"the backup {src} does not verify, nothing restored: {before}")
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        _copy(src, tmp)
        verdict = verify_file(tmp, public_key=pub, require_sealed_head=sealed)
        report = BackupReport(str(src), str(out), verdict, before.head_hash)
        if not report.ok or verdict.head_seq != before.head_seq:
            raise BackupError(f"the restored file does not verify or has another head: {report}")
        _install(tmp, out)
        return report
    except sqlite3.Error as exc:
        raise BackupError(f"restore of {src} failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- retention
@dataclass(frozen=True)
class RetentionPolicy:
    years: int
    source: str = ""


def load_retention(config_dir: str | os.PathLike[str]) -> RetentionPolicy:
    """``retention: {years: N}`` of ``<config_dir>/record.yaml``; checked against the longest
    market retention of ``coi.yaml`` (``record_retention_years``, COI-40).

    Raises:
        RetentionError: missing or invalid setting, or shorter than a market's retention.
    """
    d = Path(config_dir)
    p = d / "record.yaml"
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RetentionError(f"{p}: cannot read the retention policy: {exc}") from None
    ret = doc.get("retention") if isinstance(doc, dict) else None
    years = ret.get("years") if isinstance(ret, dict) else None
    if isinstance(years, bool) or not isinstance(years, int) or years < 1:
        raise RetentionError(f"{p}: retention.years must be a whole number of years >= 1, got {years!r}")
    coi = d / "coi.yaml"
    if coi.is_file():
        markets = (yaml.safe_load(coi.read_text(encoding="utf-8")) or {}).get("record_retention_years") or {}
        longest = max(((int(v), m) for m, v in markets.items()), default=None)
        if longest is not None and years < longest[0]:
            raise RetentionError(f"{p}: retention.years {years} is shorter than coi.yaml record_retention_years "
                                 f"{longest[1]}: {longest[0]} (COI-40)")
    return RetentionPolicy(years, str(p))


def _add_years(t: dt.datetime, years: int) -> dt.datetime:
    try:
        return t.replace(year=t.year + years)
    except ValueError:  # 29 February
        return t.replace(year=t.year + years, day=28)


@dataclass(frozen=True)
class RetentionStatus:
    path: str
    last_entry: dt.datetime | None
    retain_until: dt.datetime | None
    within: bool
    problem: str = ""

    def __str__(self) -> str:
        if self.problem:
            return f"{self.path}: {self.problem}"
        if self.last_entry is None or self.retain_until is None:
            return f"{self.path}: empty record"
        state = "WITHIN retention (deletion refused)" if self.within else "past retention"
        return (f"{self.path}: last entry {self.last_entry.isoformat()}, retain until "
                f"{self.retain_until.date().isoformat()}: {state}")


def retention_status(path: str | os.PathLike[str], policy: RetentionPolicy, now: float) -> RetentionStatus:
    """Where the record file ``path`` stands against ``policy`` at time ``now`` (epoch s). A record
    that cannot be read counts as within retention (never deleted by mistake)."""
    p = Path(path)
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            row = conn.execute("SELECT MAX(ts) FROM entries").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return RetentionStatus(str(p), None, None, True, f"cannot read the record ({exc}): kept")
    if row is None or row[0] is None:
        return RetentionStatus(str(p), None, None, False)
    last = dt.datetime.fromtimestamp(float(row[0]), dt.UTC)
    until = _add_years(last, policy.years)
    return RetentionStatus(str(p), last, until, dt.datetime.fromtimestamp(now, dt.UTC) < until)


def retention_report(paths: Iterable[str | os.PathLike[str]], policy: RetentionPolicy, now: float) -> list[
        RetentionStatus]:
    return [retention_status(p, policy, now) for p in paths]


def delete_record(path: str | os.PathLike[str], policy: RetentionPolicy, now: float) -> RetentionStatus:
    """Delete a record file (and its -wal/-shm) only when past its retention.

    Raises:
        RetentionError: the record is within retention or unreadable (nothing deleted).
    """
    st = retention_status(path, policy, now)
    if st.within:
        raise RetentionError(f"deletion refused: {st} (retention {policy.years} years from the last entry, "
                             f"{policy.source})")
    p = Path(path)
    for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")):
        f.unlink(missing_ok=True)
    return st
