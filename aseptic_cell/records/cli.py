"""Command-line helpers for ``cellctl record ...`` (wired in ``aseptic_cell/cli.py``).

``cellctl record verify FILE [--anchor SEQ:HASH|ANCHOR.json] [--key PUB]`` → :func:`cmd_record_verify`:
exit 0 when the chain, the signed checkpoints (with the cell's public record key, default from the
security directory; the head must be signed) and every stored e-signature content hash verify; 1
with the problem (naming the seq) on stderr otherwise, also when no public key is found (unless
``--unsealed-ok``). ``cellctl record anchor FILE [-o OUT]`` → :func:`cmd_record_anchor`: the signed
head as JSON, for an external anchor (MES, a second system); ``verify --anchor OUT`` checks it later.
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
    return record


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
