"""``cellctl config``: change control of recipes, cycles, programs, processes and motion paths.

  cellctl config status [--config DIR] [--json]
      every item: kind, id, version, status, effective state, content hash, approver
  cellctl config approve KIND ID --user qa1 [--password-stdin] [--config DIR] [--record FILE]
      QA e-signature (meaning approval) over the item's content hash; status set to approved;
      with --record also appended to the batch record with its signed content
  cellctl config diff A B [--config DIR] [--json]
      A, B: configuration directories or git revisions of the repository holding --config:
      items added/removed/changed field by field with their hashes, and every file that differs
  cellctl config hash [--config DIR]
      the hash of the whole configuration (what a batch start records)
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _WallClock:
    def now(self) -> float:
        return time.time()


def _dir(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None):
        return Path(args.config)
    from . import default_config_dir

    return default_config_dir()


def _cmd_status(args: argparse.Namespace) -> int:
    from .change_control import ChangeControlError, config_hash, states_table, status

    try:
        states = status(_dir(args))
    except ChangeControlError as exc:
        print(f"change control: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"config_hash": config_hash(_dir(args)), "items": [s.to_dict() for s in states]}, indent=2))
    else:
        print(states_table(states))
        bad = [s for s in states if not s.usable]
        print(f"configuration hash {config_hash(_dir(args))}; {len(states) - len(bad)} of {len(states)} items "
              "approved and unchanged")
        for s in bad:
            print(f"  {s.code}: {s.reason}")
    return EXIT_OK


def _cmd_approve(args: argparse.Namespace) -> int:
    from aseptic_cell.auth import AuthError, UserDirectory
    from aseptic_cell.records import RecordError

    from .change_control import ChangeControlError, approve

    root = _dir(args)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(
        f"password for {args.user} (signing {args.kind} {args.id}, meaning: approval): ")
    users = UserDirectory.from_file(root / "users.yaml", _WallClock())
    record = None
    if args.record:
        from aseptic_cell.records import BatchRecord
        from aseptic_cell.records.seal import load_sealer

        record = BatchRecord(args.record, _WallClock(), sealer=load_sealer())
    try:
        sig = approve(root, args.kind, args.id, users, args.user, password, record=record)
    except (AuthError, ChangeControlError, ValueError, RecordError) as exc:
        print(f"REFUSED: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if record is not None:
            record.close()
    print(f"APPROVED {args.kind} {args.id}: {sig.manifest()}; content hash {sig.record_hash}")
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from .change_control import ChangeControlError, diff_specs

    try:
        d = diff_specs(args.a, args.b, _dir(args))
    except ChangeControlError as exc:
        print(f"config diff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(d.to_dict(), indent=2, default=str) if args.json else d.render())
    return EXIT_OK


def _cmd_hash(args: argparse.Namespace) -> int:
    from .change_control import config_hash

    print(config_hash(_dir(args)))
    return EXIT_OK


def add_config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .change_control import KINDS

    c = sub.add_parser("config", help="change control: status, approve (QA e-signature), diff, hash")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    s = csub.add_parser("status", help="every controlled item with its version, status and approval")
    s.add_argument("--config", help="configuration directory (default: the project's config/)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_status)
    a = csub.add_parser("approve", help="QA approval (e-signature over the item's content hash)")
    a.add_argument("kind", choices=[k for k in KINDS if k != "motion_path"])
    a.add_argument("id")
    a.add_argument("--user", required=True, help="QA user id")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.add_argument("--config", help="configuration directory")
    a.add_argument("--record", help="also append the signature to this batch record file (the cell's record)")
    a.set_defaults(func=_cmd_approve)
    d = csub.add_parser("diff", help="what changed between two configuration directories or git revisions")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--config", help="configuration directory whose repository the revisions are of")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_diff)
    h = csub.add_parser("hash", help="the hash of the whole configuration")
    h.add_argument("--config", help="configuration directory")
    h.set_defaults(func=_cmd_hash)
