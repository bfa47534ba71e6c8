"""Command-line helpers for ``cellctl record ...`` (wired in ``aseptic_cell/cli.py``).

``cellctl record verify FILE [--anchor SEQ:HASH]`` → :func:`cmd_record_verify`: exit 0 when the
chain is intact, 1 with the problem (naming the seq) on stderr otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .store import verify_file

EXIT_OK = 0
EXIT_FAILED = 1


def _anchor(text: str) -> tuple[int, str]:
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
        help="SEQ:HASH noted earlier; the entry at SEQ must still have HASH",
    )
    verify.set_defaults(func=cmd_record_verify)
    return record


def cmd_record_verify(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Verify ``args.file``; print a one-line result; return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    report = verify_file(args.file, expected_head=getattr(args, "anchor", None))
    if report.ok:
        print(str(report), file=out)
        return EXIT_OK
    print(f"{args.file}: {report}", file=err)
    return EXIT_FAILED
