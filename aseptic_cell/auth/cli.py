"""``cellctl users ...``: user administration from the command line (issue 15 item 6).

    cellctl users list [--json]
    cellctl users add ID --name "Full Name" --role ROLE --admin ADMIN --reason TEXT
    cellctl users disable|enable ID --admin ADMIN --reason TEXT
    cellctl users reset ID --admin ADMIN --reason TEXT
    cellctl users role ID ROLE --admin ADMIN --reason TEXT
    cellctl users qualify ID --class batch [--class step ...] --until 2027-12-31 --admin ADMIN --reason TEXT
    cellctl users passwd ID                 (a user changes their own, also an expired, password)
    cellctl users audit                     (the administration audit trail and its chain check)

Works on the cell's live store (``users.db`` in the security directory,
``$ASEPTIC_CELL_SECURITY_DIR``), shared with the running HMI, supervisor and OPC UA server.
Passwords are asked with getpass, or read in order from standard input with ``--stdin``
(administrator's password first, then the new / initial password), never from arguments.
Exit 0 done, 1 refused (the code and the reason are printed), 2 configuration problem.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_CONFIG = 0, 1, 2


class _WallClock:
    def now(self) -> float:
        return time.time()


def add_users_parser(sub: Any) -> None:
    u = sub.add_parser("users", help="user administration: list, add, disable, enable, reset, role, qualify, "
                                     "passwd, audit (Part 11 §11.300; signed by a user administrator)")
    u.add_argument("--config", help="configuration directory (users.yaml); default the project's config/")
    u.add_argument("--stdin", action="store_true", help="read the passwords from standard input, one a line")
    us = u.add_subparsers(dest="users_command", required=True)
    ls = us.add_parser("list", help="every account, disabled ones too, with status and qualifications")
    ls.add_argument("--json", action="store_true")
    us.add_parser("audit", help="the user administration audit trail and its hash-chain check")
    pw = us.add_parser("passwd", help="change your own password (also an expired or initial one)")
    pw.add_argument("id")

    def admin_cmd(name: str, helptext: str) -> Any:
        c = us.add_parser(name, help=helptext)
        c.add_argument("id", help="the user id administered")
        c.add_argument("--admin", required=True, help="your user id (role user_admin); you sign the change")
        c.add_argument("--reason", required=True, help="why (stored with the signature)")
        return c

    a = admin_cmd("add", "add an account (its initial password must be changed at first log-in)")
    a.add_argument("--name", required=True, help="full printed name (shown on signatures)")
    a.add_argument("--role", required=True)
    admin_cmd("disable", "disable an account (never deleted; the id is never reused)")
    admin_cmd("enable", "enable a disabled account")
    admin_cmd("reset", "set a temporary password, changed at the next log-in")
    r = admin_cmd("role", "change a production role")
    r.add_argument("role")
    q = admin_cmd("qualify", "record a training / qualification for action classes until a date")
    q.add_argument("--class", dest="classes", action="append", required=True,
                   help="action class (first part of the users.yaml action: batch, step, alarm, ...)")
    q.add_argument("--until", required=True, help="expiry date (YYYY-MM-DD, UTC end of day; a past date withdraws)")
    u.set_defaults(func=cmd_users)


def _secret(args: argparse.Namespace, prompt: str, *, twice: bool = False) -> str:
    if args.stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value = getpass.getpass(prompt)
    if twice and getpass.getpass("again: ") != value:
        raise ValueError("the two entries differ")
    return value


def _until(text: str) -> float:
    day = _dt.date.fromisoformat(text)
    return _dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=_dt.UTC).timestamp()


def cmd_users(args: argparse.Namespace) -> int:
    from aseptic_cell.config import default_config_dir

    from .admin import AdminRefused, UserAdmin
    from .directory import AuthError, UserDirectory, UsersFileError
    from .lockout import LoginGuard
    from .policy import PasswordRejected

    config = Path(args.config) if args.config else default_config_dir()
    try:
        users = UserDirectory.from_file(config / "users.yaml", _WallClock())
    except UsersFileError as exc:
        print(f"users.yaml is INVALID: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # the cell's shared stores: lock-out (auth.db) and live users (users.db) of every interface
    users.guard = LoginGuard.shared(users.config.policy, source="cellctl")
    admin = UserAdmin(users)
    cmd = args.users_command
    try:
        if cmd == "list":
            rows = admin.listing()
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    status = "DISABLED" if r["disabled"] else ("LOCKED" if r["locked"] else "active")
                    pw = ("must change" if r["must_change_password"] else
                          "EXPIRED" if r["password_expired"] else f"expires {r['password_expires'] or '-'}")
                    quals = ", ".join(f"{c}{'' if q['current'] else '(expired)'}"
                                      for c, q in r["qualifications"].items()) or "none"
                    print(f"{r['id']:<12} {r['role']:<11} {status:<8} password {pw}; {r['full_name']}; "
                          f"qualified: {quals}")
            return EXIT_OK
        if cmd == "audit":
            for row in users.store.audit():
                print(f"{row['id']:>5} {_dt.datetime.fromtimestamp(row['t'], _dt.UTC).isoformat(timespec='seconds')} "
                      f"{row['actor']:<10} {row['action']:<20} {row['target']:<12} "
                      f"{'signed' if row['signature'] else 'unsigned'} {json.dumps(row['detail'], sort_keys=True)}")
            problems = users.store.verify_audit()
            print("audit chain OK" if not problems else "audit chain FAILED: " + "; ".join(problems))
            return EXIT_OK if not problems else EXIT_REFUSED
        if cmd == "passwd":
            old = _secret(args, f"current password of {args.id}: ")
            new = _secret(args, "new password: ", twice=True)
            users.change_password(args.id, old, new)
            print(f"password of {args.id} changed")
            return EXIT_OK
        password = _secret(args, f"password of {args.admin} (e-signature, meaning responsibility): ")
        if cmd == "add":
            initial = _secret(args, f"initial password of {args.id}: ", twice=True)
            res = admin.add(args.admin, password, user_id=args.id, full_name=args.name, role=args.role,
                            initial_password=initial, reason=args.reason)
        elif cmd == "disable":
            res = admin.disable(args.admin, password, user_id=args.id, reason=args.reason)
        elif cmd == "enable":
            res = admin.enable(args.admin, password, user_id=args.id, reason=args.reason)
        elif cmd == "reset":
            temp = _secret(args, f"temporary password of {args.id}: ", twice=True)
            res = admin.reset_password(args.admin, password, user_id=args.id, new_password=temp, reason=args.reason)
        elif cmd == "role":
            res = admin.set_role(args.admin, password, user_id=args.id, role=args.role, reason=args.reason)
        else:  # qualify
            try:
                until = _until(args.until)
            except ValueError:
                print(f"REFUSED INVALID_DATE: --until {args.until!r} is not YYYY-MM-DD", file=sys.stderr)
                return EXIT_REFUSED
            res = admin.qualify(args.admin, password, user_id=args.id, classes=args.classes, until=until,
                                reason=args.reason)
    except (AdminRefused, AuthError) as exc:
        print(f"REFUSED {exc.code}: {exc.reason}", file=sys.stderr)
        return EXIT_REFUSED
    except PasswordRejected as exc:
        print(f"REFUSED {exc.code}: {exc.reason}", file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    sig = res.signature
    print(f"{res.action} {res.target}: signed by {sig['full_name']} ({sig['user_id']}) on {sig['signed_at_iso']} "
          f"- meaning {sig['meaning'].upper()}; audit {res.audit_hash[:16]}")
    return EXIT_OK
