"""``cellctl assets``: regenerate (or ``--check``) the robot and cell description under sim/assets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _cmd_assets(args: argparse.Namespace) -> int:
    from ..config import ConfigError, default_config_dir
    from .generate import default_assets_dir, stale_assets, write_assets

    config_dir = Path(args.config) if args.config else default_config_dir()
    out = Path(args.out) if args.out else default_assets_dir()
    try:
        if args.check:
            stale = stale_assets(config_dir, out)
            for name in stale:
                print(f"{out / name}: differs from a regeneration from {config_dir}", file=sys.stderr)
            if not stale:
                print(f"assets in {out} match {config_dir}")
            return 1 if stale else 0
        for path in write_assets(config_dir, out):
            print(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    return 0


def add_assets_parser(sub: Any) -> None:
    a = sub.add_parser("assets", help="regenerate the URDF, SDF world, bridge and controller files "
                                      "from config/")
    a.add_argument("--config", help="configuration directory (default: the project's config/)")
    a.add_argument("--out", help="output directory (default: sim/assets of the source tree)")
    a.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    a.set_defaults(func=_cmd_assets)
