"""Command-line helpers for ``cellctl record ...`` (wired in ``aseptic_cell/cli.py``).

``cellctl record verify FILE [--anchor SEQ:HASH|ANCHOR.json] [--key PUB]`` → :func:`cmd_record_verify`:
exit 0 when the chain, the signed checkpoints (with the cell's public record key, default from the
security directory; the head must be signed) and every stored e-signature content hash verify; 1
with the problem (naming the seq) on stderr otherwise, also when no public key is found (unless
``--unsealed-ok``). ``cellctl record anchor FILE [-o OUT]`` → :func:`cmd_record_anchor`: the signed
head as JSON, for an external anchor (MES, a second system); ``verify --anchor OUT`` checks it later.

``cellctl record deviation list|raise|classify|investigate|close FILE ...`` and ``cellctl record
disposition FILE --release|--reject|--status --user ID`` → :mod:`aseptic_cell.disposition` (the
password from a prompt, ``--password-stdin`` or ``--password-env VAR``; a refusal prints
``REFUSED (CODE): reason`` and exits 1).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

from .seal import load_public_key
from .store import _load_checkpoints, verify_file

EXIT_OK = 0
EXIT_FAILED = 1


def _anchor(text: str) -> tuple[int, str]:
    if text.endswith(".json") or Path(text).is_file():
        try:
            doc = json.loads(Path(text).read_text(encoding="utf-8"))
            return int(doc["seq"]), str(doc["hash"]).lower()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise argparse.ArgumentTypeError(f"anchor file {text}: {exc}") from exc
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise argparse.ArgumentTypeError("anchor must be SEQ:SHA256HEX (64 hex digits)")
    return int(seq), digest.lower()


def add_record_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``record verify`` to a cellctl sub-parser set; sets ``func`` on the namespace."""
    record = subparsers.add_parser("record", help="batch record / audit trail tools")
    rsub = record.add_subparsers(dest="record_cmd", required=True)
    verify = rsub.add_parser("verify", help="check the hash chain of a batch record file")
    verify.add_argument("file", help="SQLite batch record file")
    verify.add_argument(
        "--anchor",
        type=_anchor,
        default=None,
        help="SEQ:HASH noted earlier, or an anchor JSON from `record anchor`; the entry at SEQ must still have HASH",
    )
    verify.add_argument("--key", default=None,
                        help="the cell's public record key (PEM file or directory); default the security directory")
    verify.add_argument("--unsealed-ok", action="store_true",
                        help="accept a record without signed checkpoints (chain and signatures only)")
    verify.set_defaults(func=cmd_record_verify)
    anchor = rsub.add_parser("anchor", help="print / export the signed head of a record for an external anchor")
    anchor.add_argument("file", help="SQLite batch record file")
    anchor.add_argument("-o", "--output", default=None, help="also write the anchor JSON to this file")
    anchor.add_argument("--key", default=None, help="the cell's public record key (PEM file or directory)")
    anchor.set_defaults(func=cmd_record_anchor)
    _add_qa_parsers(rsub)
    from .backup_cli import add_backup_commands  # issue 15 item 8: backup, restore, retention

    add_backup_commands(rsub)
    return record


def _add_qa_parsers(rsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``record deviation list|raise|classify|investigate|close`` and ``record disposition``."""

    def common(p: argparse.ArgumentParser, user: bool = True) -> None:
        p.add_argument("file", help="SQLite batch record file")
        p.add_argument("--batch", default=None, help="batch id (default: the record's last batch)")
        p.add_argument("--config", help="configuration directory (users.yaml, deviations.yaml); default config/")
        if user:
            p.add_argument("--user", required=True, help="your user id (users.yaml)")

    def password(p: argparse.ArgumentParser) -> None:
        pw = p.add_mutually_exclusive_group()
        pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        pw.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")

    dev = rsub.add_parser("deviation", help="deviations of a batch: list, raise, classify, investigate, close (QA)")
    dsub = dev.add_subparsers(dest="deviation_cmd", required=True)
    lst = dsub.add_parser("list", help="the batch's deviations and their state")
    common(lst, user=False)
    lst.add_argument("--json", action="store_true", help="as JSON")
    rai = dsub.add_parser("raise", help="raise a deviation by hand (deviation.raise)")
    common(rai)
    rai.add_argument("--description", required=True, help="what happened")
    rai.add_argument("--class", dest="cls", default="", choices=("", "minor", "major", "critical"))
    rai.add_argument("--link", type=int, action="append", default=[], help="seq of an entry it concerns (repeat)")
    rai.add_argument("--rule", default="", help="the rule or procedure it concerns")
    cla = dsub.add_parser("classify", help="set a deviation's class (deviation.classify)")
    common(cla)
    cla.add_argument("deviation", help="deviation id")
    cla.add_argument("--class", dest="cls", required=True, choices=("minor", "major", "critical"))
    cla.add_argument("--reason", required=True)
    inv = dsub.add_parser("investigate", help="record investigation findings (deviation.investigate)")
    common(inv)
    inv.add_argument("deviation", help="deviation id")
    inv.add_argument("--findings", required=True)
    clo = dsub.add_parser("close", help="close a deviation with its root cause, e-signed (QA, deviation.close)")
    common(clo)
    clo.add_argument("deviation", help="deviation id")
    clo.add_argument("--root-cause", required=True)
    password(clo)
    for p in (lst, rai, cla, inv, clo):
        p.set_defaults(func=cmd_record_deviation)

    disp = rsub.add_parser("disposition", help="QA release or reject of a batch, e-signed over the head hash")
    common(disp, user=False)
    what = disp.add_mutually_exclusive_group(required=True)
    what.add_argument("--release", dest="decision", action="store_const", const="release")
    what.add_argument("--reject", dest="decision", action="store_const", const="reject")
    what.add_argument("--status", dest="decision", action="store_const", const="status",
                      help="only show the disposition state and what blocks it")
    disp.add_argument("--user", default="", help="QA user id (record.disposition)")
    disp.add_argument("--justification", default="", help="required to release an aborted batch or one whose "
                      "end-of-batch glove test is missing (IL-06)")
    disp.add_argument("--key", default=None, help="the cell's public record key (PEM file or directory)")
    disp.add_argument("--unsealed-ok", action="store_true",
                      help="accept a record without signed checkpoints (chain and signatures only)")
    password(disp)
    disp.set_defaults(func=cmd_record_disposition)


class _WallClock:
    def now(self) -> float:
        import time

        return time.time()


def _qa_context(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(record opened with the cell's sealer when its key is here, users, deviation policy)."""
    from aseptic_cell.auth import UserDirectory
    from aseptic_cell.auth.lockout import LoginGuard
    from aseptic_cell.config import default_config_dir
    from aseptic_cell.disposition import DeviationPolicy

    from .seal import load_sealer
    from .store import BatchRecord

    config = Path(args.config) if getattr(args, "config", None) else default_config_dir()
    if not Path(args.file).is_file():
        raise FileNotFoundError(f"no such record file: {args.file}")
    record = BatchRecord(args.file, _WallClock(), sealer=load_sealer())
    try:
        users = UserDirectory.from_file(config / "users.yaml", _WallClock(), record=record)
        users.guard = LoginGuard.shared(users.config.policy, source="cellctl")  # the cell's lock-out store
        return record, users, DeviationPolicy.load(config)
    except BaseException:
        record.close()
        raise


def _password(args: argparse.Namespace, what: str) -> str:
    import getpass
    import os

    if getattr(args, "password_env", None):
        return os.environ.get(args.password_env, "")
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"password for {args.user} ({what}): ")


def _refused(exc: Exception, err: TextIO) -> int:
    """``REFUSED (CODE): reason`` for a QA refusal (:class:`DeviationError`) or a record the store
    refused (``RECORD``); exit code 1."""
    code, reason = getattr(exc, "code", None), getattr(exc, "reason", None)
    print(f"REFUSED ({code or 'RECORD'}): {reason if code else exc}", file=err)
    return EXIT_FAILED


def cmd_record_deviation(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from aseptic_cell import disposition as qa
    from aseptic_cell.auth import UsersFileError

    from .store import RecordError

    out, err = out or sys.stdout, err or sys.stderr
    try:
        record, users, policy = _qa_context(args)
    except (OSError, UsersFileError, RecordError, ValueError) as exc:
        print(f"REFUSED: {exc}", file=err)
        return EXIT_FAILED
    try:
        batch = args.batch or qa.last_batch(record)
        cmd = args.deviation_cmd
        if cmd == "list":
            devs = qa.deviations(record, batch, policy)
            if getattr(args, "json", False):
                print(json.dumps([d.to_dict() for d in devs], indent=2, ensure_ascii=False), file=out)
            else:
                print(f"batch {batch}: {len(devs)} deviation(s), {sum(d.open for d in devs)} open", file=out)
                for d in devs:
                    links = ", ".join(str(x.get("seq")) for x in d.links)
                    print(f"  {d.id} [{d.cls}] {d.state} ({d.source}) raised by {d.raised_by} at seq {d.raised_seq}"
                          f"{' links seq ' + links if links else ''}: {d.description[:120]}", file=out)
            return EXIT_OK
        if cmd == "raise":
            dev = qa.raise_deviation(record, users, args.user, batch, args.description, cls=args.cls,
                                     links=args.link, rule=args.rule, policy=policy)
        elif cmd == "classify":
            dev = qa.classify(record, users, args.user, args.deviation, args.cls, args.reason, policy)
        elif cmd == "investigate":
            dev = qa.investigate(record, users, args.user, args.deviation, args.findings, policy)
        else:
            pw = _password(args, f"closing {args.deviation}, meaning from users.yaml deviation.close")
            dev = qa.close_deviation(record, users, args.user, pw, args.deviation, args.root_cause, policy)
        print(f"{dev.id} [{dev.cls}] {dev.state}", file=out)
        return EXIT_OK
    except (qa.DeviationError, RecordError) as exc:
        return _refused(exc, err)
    finally:
        record.close()


def cmd_record_disposition(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Release or reject (or ``--status``); exit 0 when done, 1 with ``REFUSED (CODE): reason``."""
    from aseptic_cell import disposition as qa
    from aseptic_cell.auth import UsersFileError

    from .store import RecordError

    out, err = out or sys.stdout, err or sys.stderr
    try:
        key = load_public_key(getattr(args, "key", None))
    except (OSError, ValueError) as exc:
        print(f"REFUSED (CHAIN_INVALID): public record key unusable: {exc}", file=err)
        return EXIT_FAILED
    if key is None and not args.unsealed_ok:
        print("REFUSED (CHAIN_INVALID): no public record key (record_seal.pub) to verify the signed checkpoints; "
              "give --key, or --unsealed-ok", file=err)
        return EXIT_FAILED
    try:
        record, users, policy = _qa_context(args)
    except (OSError, UsersFileError, RecordError, ValueError) as exc:
        print(f"REFUSED: {exc}", file=err)
        return EXIT_FAILED

    def walk() -> Any:  # the walk of `cellctl record verify FILE`
        return verify_file(args.file, public_key=key, require_sealed_head=key is not None and not args.unsealed_ok)

    try:
        batch = args.batch or qa.last_batch(record)
        if args.decision == "status":
            st = qa.disposition_status(record, batch)
            print(f"batch {batch}: {st['state']}" + (f" (seq {st['seq']} by {st['by']})" if st["seq"] else ""),
                  file=out)
            for code, why in qa.check_disposition(record, batch, verify=walk, policy=policy):
                print(f"  blocked ({code}): {why}", file=out)
            return EXIT_OK
        if not args.user:
            print("REFUSED (INVALID): --user is required to release or reject", file=err)
            return EXIT_FAILED
        pw = _password(args, f"{args.decision} of batch {batch}, meaning: approval")
        entry = qa.dispose(record, users, args.user, pw, batch, args.decision, justification=args.justification,
                           verify=walk, policy=policy)
        print(f"batch {batch} {args.decision}d at seq {entry.seq} over head seq {entry.payload['head_seq']} "
              f"hash {entry.payload['head_hash']}", file=out)
        return EXIT_OK
    except (qa.DeviationError, RecordError) as exc:
        return _refused(exc, err)
    finally:
        record.close()


def cmd_record_verify(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Verify ``args.file``; print a one-line result; return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    unsealed_ok = bool(getattr(args, "unsealed_ok", False))
    try:
        key = load_public_key(getattr(args, "key", None))
    except (OSError, ValueError) as exc:
        print(f"{args.file}: record NOT verified: public record key unusable: {exc}", file=err)
        return EXIT_FAILED
    if key is None and not unsealed_ok:
        print(f"{args.file}: record NOT verified: no public record key (record_seal.pub) to check the signed "
              "checkpoints; give --key, or --unsealed-ok for the chain only", file=err)
        return EXIT_FAILED
    report = verify_file(args.file, expected_head=getattr(args, "anchor", None), public_key=key,
                         require_sealed_head=key is not None and not unsealed_ok)
    if report.ok:
        print(str(report), file=out)
        return EXIT_OK
    print(f"{args.file}: {report}", file=err)
    return EXIT_FAILED


def cmd_record_anchor(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Verify ``args.file`` and print its signed head (the last checkpoint) as JSON; exit 1 when the
    record does not verify or its head is not signed."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        key = load_public_key(getattr(args, "key", None))
    except (OSError, ValueError) as exc:
        print(f"{args.file}: public record key unusable: {exc}", file=err)
        return EXIT_FAILED
    report = verify_file(args.file, public_key=key, require_sealed_head=True)
    if not report.ok:
        print(f"{args.file}: {report}", file=err)
        return EXIT_FAILED
    conn = sqlite3.connect(f"{Path(args.file).resolve().as_uri()}?mode=ro", uri=True)
    try:
        cps = _load_checkpoints(conn)
    finally:
        conn.close()
    doc: dict[str, Any] = {"record": str(args.file), "count": report.count,
                           "signature_verified": key is not None}
    if cps:
        doc.update(cps[max(cps)].to_dict())
    else:
        doc.update({"seq": report.head_seq, "hash": report.head_hash})
    text = json.dumps(doc, indent=2, sort_keys=True)
    print(text, file=out)
    if getattr(args, "output", None):
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return EXIT_OK
