"""``cellctl record report`` and ``cellctl record review`` (wired in ``aseptic_cell/cli.py``).

``cellctl record report FILE (--pdf | --html | --json) -o OUT [--batch ID] [--min-priority P]``
writes the batch report (default batch: the file's last one); exit 0, or 1 with the reason.
The report is also written when the chain does not verify: it then says so in its first line
and in its chain section, and the exit code is 1.

``cellctl record review FILE --user ID [--batch ID] [--password-stdin | --password-env VAR]``
prints the review by exception, then appends the reviewer's e-signature with meaning
``review`` (the password is prompted unless given on stdin or in an environment variable).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from .exceptions import DEFAULT_MIN_PRIORITY, PRIORITIES

EXIT_OK = 0
EXIT_FAILED = 1


def add_report_commands(record: argparse.ArgumentParser) -> None:
    """Add ``report`` and ``review`` to the ``record`` sub-command of cellctl."""
    rsub = next(a for a in record._actions if isinstance(a, argparse._SubParsersAction))
    rep = rsub.add_parser("report", help="write the human-readable batch report (PDF or HTML)")
    rep.add_argument("file", help="SQLite batch record file")
    fmt = rep.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--pdf", dest="fmt", action="store_const", const="pdf", help="PDF (reportlab)")
    fmt.add_argument("--html", dest="fmt", action="store_const", const="html", help="one self-contained HTML file")
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="the report's data as JSON")
    rep.add_argument("-o", "--out", required=True, help="output file")
    rep.add_argument("--batch", default=None, help="batch id (default: the last batch in the file)")
    rep.add_argument("--min-priority", choices=PRIORITIES, default=DEFAULT_MIN_PRIORITY,
                     help=f"lowest alarm priority listed as an exception (default {DEFAULT_MIN_PRIORITY})")
    rep.set_defaults(func=cmd_record_report)

    rev = rsub.add_parser("review", help="review a batch by exception and sign it reviewed (meaning: review)")
    rev.add_argument("file", help="SQLite batch record file")
    rev.add_argument("--user", required=True, help="reviewer's user id (role with record.review)")
    rev.add_argument("--batch", default=None, help="batch id (default: the last batch in the file)")
    rev.add_argument("--min-priority", choices=PRIORITIES, default=DEFAULT_MIN_PRIORITY)
    rev.add_argument("--comment", default="", help="the reviewer's comment (recorded as the signature's reason)")
    rev.add_argument("--config", help="configuration directory (users.yaml); default the project's config/")
    pw = rev.add_mutually_exclusive_group()
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    rev.add_argument("--dry-run", action="store_true", help="print the review only; do not sign")
    rev.set_defaults(func=cmd_record_review)


def cmd_record_report(args: argparse.Namespace) -> int:
    from .batch_report import build_report, render_html, render_pdf
    from .source import ReportError

    t0 = time.perf_counter()
    try:
        report = build_report(args.file, args.batch, min_priority=args.min_priority, plots=args.fmt != "json")
    except ReportError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.fmt == "pdf":
        render_pdf(report, out)
    elif args.fmt == "html":
        out.write_text(render_html(report), encoding="utf-8")
    else:
        out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n",
                       encoding="utf-8")
    ok = bool(report.chain.get("ok"))
    print(f"{out}: batch {report.batch_id}, {report.entry_count} entries, "
          f"{len(report.review.departures)} exception(s), {len(report.signatures)} signature(s), "
          f"chain {'OK' if ok else 'FAILED'} ({time.perf_counter() - t0:.2f} s)")
    if not ok:
        print(f"{args.file}: {report.chain.get('text')}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


class _WallClock:
    def now(self) -> float:
        return time.time()


def cmd_record_review(args: argparse.Namespace) -> int:
    from aseptic_cell.auth import UserDirectory, UsersFileError
    from aseptic_cell.auth.lockout import LoginGuard
    from aseptic_cell.config import default_config_dir
    from aseptic_cell.records import BatchRecord, RecordError, signature_manifest

    from .exceptions import ReviewRefused, review_by_exception, sign_reviewed
    from .source import ReportError

    try:
        review = review_by_exception(args.file, args.batch, args.min_priority)
    except ReportError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"batch {review.batch_id}: {len(review.departures)} departure(s) from the recipe; chain "
          f"{'OK' if review.chain_ok else 'FAILED'}")
    for d in review.departures:
        print(f"  [{d.category}] {d.ts_iso} {d.actor}: {d.summary}  ({d.link})")
    for who, p in sorted(review.people.items()):
        print(f"  person {who} ({p['role'] or '-'}): {p['entries']} entries")
    if args.dry_run:
        return EXIT_OK if review.chain_ok else EXIT_FAILED
    if args.password_env:
        password = os.environ.get(args.password_env, "")
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.user} (signing batch {review.batch_id} reviewed, "
                                   "meaning: review): ")
    config = Path(args.config) if args.config else default_config_dir()
    try:
        with BatchRecord(args.file, _WallClock()) as record:
            users = UserDirectory.from_file(config / "users.yaml", _WallClock(), record=record)
            # the cell's lock-out store, shared with the HMI, supervisor and OPC UA server (§11.300)
            users.guard = LoginGuard.shared(users.config.policy, source="cellctl")
            entry = sign_reviewed(record, users, args.user, password, batch_id=review.batch_id,
                                  min_priority=args.min_priority, comment=args.comment)
    except ReviewRefused as exc:
        print(f"REFUSED: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    except (UsersFileError, RecordError, OSError, sqlite3.Error) as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"seq {entry.seq}: {signature_manifest(entry.payload)}")
    return EXIT_OK
