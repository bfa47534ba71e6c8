"""``python -m aseptic_cell.security init [DIR]``: create the trust list and the per-principal
keys where missing (idempotent); ``show [DIR]``: print the trust list (never a key)."""

from __future__ import annotations

import argparse
import sys

from .keys import SecurityError, default_security_dir, init_security_dir, load_trust


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aseptic_cell.security")
    ap.add_argument("action", choices=["init", "show"])
    ap.add_argument("directory", nargs="?", default=None,
                    help=f"security directory (default {default_security_dir()})")
    args = ap.parse_args(argv)
    try:
        if args.action == "init":
            d = init_security_dir(args.directory)
            print(f"security directory {d}: trust list and keys ready")
        t = load_trust(args.directory)
        for name, scopes in t.scopes.items():
            print(f"  {name}: {', '.join(scopes)}")
        print(f"  replay window {t.window_s:g} s, cell {t.cell_id}")
    except (SecurityError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
