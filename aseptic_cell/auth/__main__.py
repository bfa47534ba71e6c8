"""``python -m aseptic_cell.auth hash``: make a password hash for ``config/users.yaml``.

The password is read with getpass (asked twice) or, with ``--stdin``, from the first line of
standard input. Only the hash is printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from .models import PasswordPolicy
from .passwords import DEFAULT_ITERATIONS, MIN_ITERATIONS, hash_password


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aseptic_cell.auth")
    sub = parser.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hash", help="print a pbkdf2_sha256 hash of a password for users.yaml")
    h.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"PBKDF2 iterations (default {DEFAULT_ITERATIONS}, minimum {MIN_ITERATIONS})",
    )
    h.add_argument("--stdin", action="store_true", help="read the password from standard input")
    args = parser.parse_args(argv)

    min_len = PasswordPolicy().min_password_length
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    if len(password) < min_len:
        print(f"password must have at least {min_len} characters", file=sys.stderr)
        return 1
    try:
        print(hash_password(password, iterations=args.iterations))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
