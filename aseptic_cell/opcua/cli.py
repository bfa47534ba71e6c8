"""Command-line wiring of the device-level OPC UA pieces (``cellctl emulate``).

``add_emulate_parser(subparsers)`` adds the ``emulate`` sub-command to ``cellctl``'s parser;
the sub-command's handler is ``args.func(args) -> exit code`` (0 ok, 2 configuration error).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_CONFIG = 0, 2


def add_emulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "emulate",
        help="run the emulated hardware: the sim models behind one OPC UA server per device",
        description="Run SimCell at the configured sim speed and serve every device (or --device ...) on the "
        "endpoint config/opcua.yaml gives it, until SIGTERM/Ctrl-C. Prints one JSON line "
        '{"ready": true, "devices": {id: endpoint}} once every server listens.',
    )
    p.add_argument(
        "--config-dir", default=None, help="configuration directory (default: the package's config/)"
    )
    p.add_argument(
        "--opcua-config",
        default=None,
        help="opcua.yaml to use (default: $ASEPTIC_CELL_OPCUA_CONFIG, else <config-dir>/opcua.yaml)",
    )
    p.add_argument(
        "--device",
        action="append",
        default=None,
        metavar="ID",
        help="serve only this device (repeatable; default: every device in opcua.yaml)",
    )
    p.add_argument(
        "--speed", type=float, default=None, help="sim seconds per wall second (default: opcua.yaml)"
    )
    p.add_argument("--update-period", type=float, default=None, help="variable update period, wall s")
    p.add_argument(
        "--fault-methods",
        action="store_true",
        help="expose the Emulator/InjectFault and ClearFault test hooks (off unless asked for; "
        "in sign_and_encrypt mode only fault_roles may call them)",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=run_emulate)
    return p


def run_emulate(args: argparse.Namespace) -> int:
    from ..config import ConfigError, default_config_dir, load_config
    from .config import OpcUaConfigError, check_against_cell, load_opcua_config
    from .emulator import serve

    logging.basicConfig(
        level=getattr(logging, args.log_level), format="[emulate] %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("asyncua", "asyncua.server", "asyncua.common"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    try:
        cell_cfg = load_config(config_dir)
        ocfg = load_opcua_config(args.opcua_config, config_dir)
    except ConfigError as exc:
        print(f"configuration in {config_dir} is INVALID:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OpcUaConfigError as exc:
        print(f"OPC UA configuration is INVALID:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    problems = check_against_cell(ocfg, cell_cfg)
    if problems:
        print("OPC UA configuration is INVALID:\n" + "\n".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "fault_methods", False):
        ocfg.emulator.expose_fault_methods = True
    if args.speed is not None and not (args.speed > 0 and args.speed < float("inf")):
        print(f"--speed must be a finite number > 0, got {args.speed}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(
            serve(cell_cfg, ocfg, args.device, sim_speed=args.speed, update_period_s=args.update_period)
        )
    except ValueError as exc:
        print(f"emulate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return EXIT_OK
