"""``cellctl record backup | restore | retention | delete`` (issue 15 item 8; :mod:`.backup`).

  cellctl record backup FILE DEST [--key PUB] [--unsealed-ok]
      online backup (SQLite backup API) while the cell appends; the copy verified as by
      `cellctl record verify`; exit 1 (nothing left at DEST) when it does not verify
  cellctl record restore BACKUP DEST [--key PUB] [--unsealed-ok]
      the backup verified, copied to the new file DEST, verified again, same head hash
  cellctl record retention FILE... [--config DIR]
      each record's last entry and retain-until date (config/record.yaml retention.years)
  cellctl record delete FILE [--config DIR]
      refused (exit 1) while the record is within its retention period
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

EXIT_OK, EXIT_FAILED = 0, 1


def _config_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None):
        return Path(args.config)
    from ..config import default_config_dir

    return default_config_dir()


def cmd_backup(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from .backup import BackupError, backup_record, restore_record

    out, err = out or sys.stdout, err or sys.stderr
    fn = restore_record if args.record_cmd == "restore" else backup_record
    try:
        report = fn(args.file, args.dest, key=args.key, unsealed_ok=args.unsealed_ok)
    except (BackupError, OSError, ValueError) as exc:
        print(f"{args.record_cmd} REFUSED: {exc}", file=err)
        return EXIT_FAILED
    print(f"{args.record_cmd} OK: {report}", file=out)
    return EXIT_OK


def cmd_retention(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from .backup import RetentionError, delete_record, load_retention, retention_report

    out, err = out or sys.stdout, err or sys.stderr
    try:
        policy = load_retention(_config_dir(args))
        if args.record_cmd == "delete":
            st = delete_record(args.file, policy, time.time())
            print(f"deleted {st}", file=out)
            return EXIT_OK
    except RetentionError as exc:
        print(str(exc), file=err)
        return EXIT_FAILED
    print(f"retention {policy.years} years from the last entry ({policy.source})", file=out)
    for st in retention_report(args.files, policy, time.time()):
        print(f"  {st}", file=out)
    return EXIT_OK


def add_backup_commands(rsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (("backup", "online backup of a record file, verified"),
                       ("restore", "restore a verified backup to a new record file, verified")):
        b = rsub.add_parser(name, help=text)
        b.add_argument("file", help="SQLite batch record file" if name == "backup" else "backup file")
        b.add_argument("dest", help="the new file to write (never overwritten)")
        b.add_argument("--key", default=None, help="the cell's public record key (PEM file or directory)")
        b.add_argument("--unsealed-ok", action="store_true", help="accept a record without signed checkpoints")
        b.set_defaults(func=cmd_backup)
    r = rsub.add_parser("retention", help="report each record's retention (config/record.yaml retention.years)")
    r.add_argument("files", nargs="+", help="record files")
    r.add_argument("--config", help="configuration directory")
    r.set_defaults(func=cmd_retention)
    d = rsub.add_parser("delete", help="delete a record file: refused within its retention period")
    d.add_argument("file")
    d.add_argument("--config", help="configuration directory")
    d.set_defaults(func=cmd_retention)
