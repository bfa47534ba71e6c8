"""``cellctl``: the command-line entry point of aseptic_cell.

Sub-commands:
  check-config [DIR]   validate every configuration file; exit 2 naming file, field and reason
  schema [--out DIR]   write the JSON schema of every configuration file
  sim                  run the simulated cell headless in one process (a VHP and an autoclave cycle)
  run                  run the cell: the ROS 2 node graph on the simulated devices (until Ctrl-C)
  demo                 start the graph and run one batch sequence end to end
  twin                 the throughput twin: N patients over D days, in-process at full speed (twin.py)
  record verify FILE   check a batch record's hash chain
  record report FILE   the batch report (--pdf/--html -o OUT); record review FILE --user ID: sign reviewed
  ros list | echo      graph inspection
  emulate              the emulated hardware: one OPC UA server per simulated device
  motion ...           motion library: plan, approve (QA e-signature), revoke, list (motion/cli.py)
  config status | approve KIND ID | diff A B | hash   change control (config/change_control_cli.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError, default_config_dir, load_config, schemas

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _cmd_check_config(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else default_config_dir()
    try:
        cfg = load_config(directory)
    except ConfigError as exc:
        print(f"configuration in {directory} is INVALID ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    service_issues = _check_service_configs(directory, cfg)
    if service_issues:
        print(f"configuration in {directory} is INVALID ({len(service_issues)} problem(s)):", file=sys.stderr)
        for problem in service_issues:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    layout = cfg.layout
    print(f"configuration in {directory} is valid")
    print(f"  cell {layout.cell.id}: devices {', '.join(layout.device_ids())}")
    print(f"  glove ports {len(layout.isolator.glove_ports)}, RTPs {len(layout.isolator.rtps)}, "
          f"geometry boxes {len(cfg.geometry.boxes)}")
    print(f"  VHP cycles {', '.join(c.id for c in cfg.vhp_cycles.cycles)}")
    print(f"  autoclave programs {', '.join(p.id for p in cfg.autoclave_programs.programs)}")
    print(f"  interlock rules {len(cfg.interlocks.rules)}; recipes {', '.join(sorted(cfg.recipes)) or '-'}")
    return EXIT_OK


def _check_service_configs(directory: Path, cfg) -> list[str]:
    """The service front ends' files (HMI, OPC UA bridge and cell server). They are checked here
    but not by ``load_config``: a broken HMI file must never stop a device node (rule 4)."""
    problems: list[str] = []
    checks = []
    if (directory / "hmi.yaml").is_file():
        def _hmi() -> list[str]:
            from .hmi.config import load_hmi_config

            load_hmi_config(directory / "hmi.yaml")
            return []
        checks.append(("hmi.yaml", _hmi))
    if (directory / "opcua.yaml").is_file():
        def _opcua() -> list[str]:
            from .opcua.config import check_against_cell, load_opcua_config

            return check_against_cell(load_opcua_config(config_dir=directory), cfg)
        checks.append(("opcua.yaml", _opcua))
    if (directory / "opcua_server.yaml").is_file():
        def _server() -> list[str]:
            from .opcua.server.config import load_server_config

            load_server_config(directory / "opcua_server.yaml")
            return []
        checks.append(("opcua_server.yaml", _server))
    for name, check in checks:
        try:
            problems += [f"{name}: {p}" for p in check()]
        except Exception as exc:  # each loader raises its own error type with a precise message
            problems.append(f"{name}: {exc}")
    return problems


def _cmd_schema(args: argparse.Namespace) -> int:
    all_schemas = schemas()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in all_schemas.items():
            target = out / (name.replace("/*.yaml", "").replace(".yaml", "") + ".schema.json")
            target.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
            print(target)
    else:
        json.dump(all_schemas, sys.stdout, indent=2)
        print()
    return EXIT_OK


def _cmd_sim(args: argparse.Namespace) -> int:
    from .headless import run_headless

    directory = Path(args.config) if args.config else default_config_dir()
    try:
        cfg = load_config(directory)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    return run_headless(cfg, speed=args.speed, json_out=args.json)


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import run_cell

    directory = Path(args.config) if args.config else default_config_dir()
    try:
        cfg = load_config(directory)
    except ConfigError as exc:
        print(f"configuration in {directory} is INVALID:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    speed = args.speed if args.speed is not None else cfg.layout.sim.speedup
    from .liveview.server import live_view  # --foxglove (issue 16)

    with live_view(str(directory), enabled=args.foxglove, port=args.foxglove_port):
        return run_cell(str(directory), speed=speed, hardware=args.hardware, duration_s=args.duration,
                        emulate=args.hardware == "opcua" and not args.external_hardware, arm=args.arm)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    directory = Path(args.config) if args.config else default_config_dir()
    try:
        load_config(directory)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    speed = args.speed if args.speed is not None else float("inf")
    if args.patients:  # N patient batches at once (issue 14): over the real graph, or --in-process
        from .demo import run_patients_demo, run_patients_graph_demo

        if args.in_process:
            return run_patients_demo(str(directory), args.patients, json_out=args.json, record_dir=args.record_dir)
        return run_patients_graph_demo(str(directory), args.patients, speed=speed, json_out=args.json,
                                       record_dir=args.record_dir)
    return run_demo(str(directory), speed=speed, json_out=args.json, record_dir=args.record_dir,
                    scenario=args.scenario, recipe_id=args.recipe, arm=args.arm, bag=args.bag)


def _cmd_twin(args: argparse.Namespace) -> int:
    from .twin import TwinParams, run_twin_cli

    directory = Path(args.config) if args.config else default_config_dir()
    params = TwinParams(patients=args.patients, days=args.days, process=args.process, purge_min=args.purge_min,
                        lc_min=args.lc_min, slots=args.slots, seed=args.seed, failure_rate=args.failure_rate,
                        time_scale=args.time_scale, out_dir=args.out, plots=not args.no_plots)
    try:
        return run_twin_cli(str(directory), params, json_out=args.json)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG


def _speed(value: str) -> float:
    if value == "max":
        return float("inf")
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', got {value!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"speed must be a positive finite number or 'max', got {value!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellctl", description="aseptic_cell supervisory control")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-config", help="validate the configuration directory")
    c.add_argument("dir", nargs="?", help="configuration directory (default: the project's config/)")
    c.set_defaults(func=_cmd_check_config)

    s = sub.add_parser("schema", help="write the JSON schema of every configuration file")
    s.add_argument("--out", help="directory to write <file>.schema.json into (default: stdout)")
    s.set_defaults(func=_cmd_schema)

    r = sub.add_parser("sim", help="run the simulated cell headless, in one process (no ROS)")
    r.add_argument("--config", help="configuration directory")
    r.add_argument("--speed", type=_speed, default=None,
                   help="sim-time speed-up (sim s per wall s) or 'max'; default from cell.yaml")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=_cmd_sim)

    r = sub.add_parser("run", help="run the cell: the ROS 2 node graph as OS processes (until Ctrl-C)")
    r.add_argument("--config", help="configuration directory")
    r.add_argument("--speed", type=_speed, default=None,
                   help="sim-time speed-up (sim s per wall s) or 'max'; default from cell.yaml")
    r.add_argument("--hardware", choices=("sim", "opcua"), default="sim",
                   help="device backends: sim (simulated devices, default) or opcua")
    r.add_argument("--external-hardware", action="store_true",
                   help="with --hardware opcua: do not start the emulator (real controllers or an emulator "
                        "started elsewhere serve config/opcua.yaml's endpoints)")
    r.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    r.add_argument("--foxglove", action="store_true", help="serve a Foxglove live view on loopback")
    r.add_argument("--arm", choices=("sim", "mujoco", "gazebo"), default="sim",
                   help="the arm's motion: sim, mujoco physics, or gazebo (started by launch/gazebo.launch.py; "
                        "owns /clock, sim_world follows it)")
    r.add_argument("--foxglove-port", type=int, default=0, help="its port (default: a free one, printed)")
    r.set_defaults(func=_cmd_run)
    from .records.cli import add_record_parser
    from .report.cli import add_report_commands  # issue 15: record report / record review

    add_report_commands(add_record_parser(sub))

    from .ros_tools import add_ros_parser

    add_ros_parser(sub)

    from .opcua.cli import add_emulate_parser

    add_emulate_parser(sub)

    from .assets.cli import add_assets_parser  # issue 16: Gazebo/MuJoCo assets
    from .bag.cli import add_bag_parser  # issue 16: MCAP recording

    add_assets_parser(sub)
    add_bag_parser(sub)

    d = sub.add_parser("demo", help="start the node graph and run one batch of a recipe through the supervisor")
    d.add_argument("--config", help="configuration directory")
    d.add_argument("--speed", type=_speed, default=None, help="sim-time speed-up or 'max' (default max)")
    d.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    d.add_argument("--record-dir", help="where the batch record is written (default ./records)")
    d.add_argument("--recipe", help="master recipe id (default CART-TRANSDUCTION)")
    d.add_argument("--scenario", help="scenario YAML (config/scenarios/*.yaml): operator actions and faults "
                   "applied while the batch runs; the summary reports trips, refusals, alarms, timeline")
    d.add_argument("--arm", choices=("sim", "mujoco", "gazebo"), default="sim",
                   help="the arm's motion: sim (the controller model, default), mujoco (MuJoCo physics) or "
                        "gazebo (a running Gazebo owns /clock; sim_world follows it)")
    d.add_argument("--bag", help="record the batch's topics to this MCAP file")
    d.add_argument("--patients", type=int, default=0,
                   help="run N patient batches (PATIENT-CART-SHORT) at once over the real node graph (RunBatch "
                        "with COI and DIN)")
    d.add_argument("--in-process", action="store_true",
                   help="with --patients: the supervisor and the simulated cell in one process (no ROS)")
    d.set_defaults(func=_cmd_demo)
    t = sub.add_parser("twin", help="throughput twin: the real supervisor over N patients and D days, in-process")
    t.add_argument("--config", help="configuration directory")
    t.add_argument("--patients", type=int, default=16, help="patients kept in demand (a backlog of N; default 16)")
    t.add_argument("--days", type=float, default=30.0, help="simulated days (default 30)")
    t.add_argument("--process", default="cart-autologous", help="process definition (config/processes/) id")
    t.add_argument("--purge-min", type=float, default=None, help="SEG-05 purge wait in min (default scheduling.yaml)")
    t.add_argument("--lc-min", type=float, default=None, help="SEG-04 line clearance in min (default scheduling.yaml)")
    t.add_argument("--slots", type=int, default=None, help="incubator slots (default scheduling.yaml)")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--failure-rate", type=float, default=None, help="fraction of batches that fail (default "
                   "scheduling.yaml simulation.failure_rate)")
    t.add_argument("--time-scale", type=float, default=1.0, help="scale every process duration (< 1: faster)")
    t.add_argument("--out", help="directory for the plots, twin.json and the records (default: a temp dir)")
    t.add_argument("--no-plots", action="store_true")
    t.add_argument("--json", action="store_true", help="print the report as one JSON object")
    t.set_defaults(func=_cmd_twin)
    from .motion.cli import add_parser as add_motion_parser

    add_motion_parser(sub)
    from .config.change_control_cli import add_config_parser  # issue 15 item 7: change control

    add_config_parser(sub)
    from .auth.cli import add_users_parser  # issue 15 item 6: user administration

    add_users_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .security.transport import confine_to_host

    confine_to_host()  # before any rclpy: this process and its children stay on this host (issue 12)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
