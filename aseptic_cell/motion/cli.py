"""``cellctl motion``: plan, review, approve and list the paths of the motion library.

  cellctl motion plan --from rtp_pick --to incubator_place [--seed 1] [--by eng1]
                      [--condition door_closed:incubator ...] [--speed-class transit]
      plans with scene.plan and writes the path as a PROPOSED entry (waypoints, content
      hash, clearance profile, duration) to the library (default config/motion_library.yaml)
  cellctl motion approve --name NAME --user qa1 [--password-stdin]
      re-certifies the path and records the QA user's e-signature (meaning: approval)
  cellctl motion revoke --name NAME      removes an approval
  cellctl motion list [--json]           every path with its status

Also runnable as ``python -m aseptic_cell.motion.cli``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

# numpy, the C extension and auth are imported by the commands, so that registering the
# sub-commands on cellctl's parser stays cheap.
if TYPE_CHECKING:  # pragma: no cover
    from .library import LibraryPath
    from .scene import Scene, SpeedClass

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROFILE_POINTS = 50


class _WallClock:
    def now(self) -> float:
        return time.time()


def _config_dir(args: argparse.Namespace) -> Path:
    if args.config:
        return Path(args.config)
    from aseptic_cell.config import default_config_dir

    return default_config_dir()


def _library_file(args: argparse.Namespace) -> Path:
    return Path(args.library) if args.library else _config_dir(args) / "motion_library.yaml"


def _scene(args: argparse.Namespace) -> Scene:
    from .scene import scene_from_files

    return scene_from_files(_config_dir(args))


def review_of(scene: Scene, lp: LibraryPath, dt: float = 0.02) -> dict[str, Any]:
    """Certified check of a library path under its conditions, and its review figures:
    duration, minimum clearance, TCP speed bound and a clearance profile [[t_s, m], ...]."""
    import numpy as np

    from .planner import time_parameterise

    cls = cast("SpeedClass", lp.speed_class)
    samples, _ = time_parameterise(scene, lp.waypoints, dt, scene.speed_limits[cls])
    chk = scene.check_trajectory(samples, dt, speed_class=cls, conditions=set(lp.conditions))
    d = scene.clearance(samples, conditions=set(lp.conditions)).distance
    idx = np.unique(np.linspace(0, len(samples) - 1, PROFILE_POINTS).round().astype(int))
    return {
        "certified": bool(chk.ok),
        "check_reason": chk.reason,
        "duration_s": round((len(samples) - 1) * dt, 3),
        "min_clearance_m": round(float(d.min()), 5),
        "speed_bound_max_m_s": round(chk.speed_bound_max, 4),
        "clearance_profile": [[round(float(i * dt), 3), round(float(d[i]), 5)] for i in idx],
    }


def _cmd_plan(args: argparse.Namespace) -> int:
    from aseptic_cell.records.canonical import iso_utc

    from .library import LibraryPath, MotionLibrary

    scene = _scene(args)
    poses = scene.arm.poses
    for p in (args.from_pose, args.to_pose):
        if p not in poses:
            print(f"unknown pose {p!r}; known: {', '.join(sorted(poses))}", file=sys.stderr)
            return EXIT_USAGE
    conds = sorted(set(args.condition or []))
    res = scene.plan(poses[args.from_pose], poses[args.to_pose], conditions=set(conds),
                     speed_class=args.speed_class, seed=args.seed)
    if not res.ok:
        print(f"REFUSED ({res.code}): {res.reason}", file=sys.stderr)
        return EXIT_FAILED
    name = args.name or f"{args.from_pose}__{args.to_pose}"
    lp = LibraryPath(name=name, from_pose=args.from_pose, to_pose=args.to_pose, waypoints=res.waypoints,
                     speed_class=args.speed_class, conditions=tuple(conds),
                     planned={"by": args.by, "at": iso_utc(time.time()), "seed": args.seed,
                              "planner": "RRT-Connect + shortcut (aseptic_cell.motion.planner)"})
    lp.review = review_of(scene, lp)
    lib = MotionLibrary.load(_library_file(args))
    lib.propose(lp)
    path = lib.save(_library_file(args))
    print(f"PROPOSED {name}: {len(lp.waypoints)} waypoints, duration {lp.review['duration_s']} s, "
          f"min clearance {float(lp.review['min_clearance_m']) * 1000:.1f} mm, "
          f"hash {lp.content_hash[:12]}... "
          f"-> {path} (needs QA approval: cellctl motion approve --name {name} --user <qa user>)")
    return EXIT_OK


def _cmd_approve(args: argparse.Namespace) -> int:
    from aseptic_cell.auth import AuthError, UserDirectory

    from .library import LibraryError, MotionLibrary

    lib = MotionLibrary.load(_library_file(args))
    lp = lib.paths.get(args.name)
    if lp is None:
        print(f"no path named {args.name!r} in {_library_file(args)}", file=sys.stderr)
        return EXIT_USAGE
    review = review_of(_scene(args), lp)
    if not review["certified"]:
        print(f"REFUSED: path {args.name!r} does not pass the certified check: {review['check_reason']}",
              file=sys.stderr)
        return EXIT_FAILED
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(
        f"password for {args.user} (signing '{args.name}', meaning: approval): ")
    users = UserDirectory.from_file(_config_dir(args) / "users.yaml", _WallClock())
    try:
        sig = lib.approve(args.name, users, args.user, password)
    except (AuthError, LibraryError) as exc:
        print(f"REFUSED: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_FAILED
    lp.review = review
    lib.save()
    print(f"APPROVED {args.name}: {sig.manifest()}; content hash {sig.record_hash}")
    return EXIT_OK


def _cmd_revoke(args: argparse.Namespace) -> int:
    from .library import LibraryError, MotionLibrary

    lib = MotionLibrary.load(_library_file(args))
    try:
        lib.revoke(args.name)
    except LibraryError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    lib.save()
    print(f"REVOKED approval of {args.name}")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from .library import MotionLibrary

    lib = MotionLibrary.load(_library_file(args))
    rows = []
    for lp in lib.paths.values():
        ok, why = lp.status()
        rows.append({"name": lp.name, "from": lp.from_pose, "to": lp.to_pose, "approved": ok, "status": why,
                     "waypoints": len(lp.waypoints), "duration_s": lp.review.get("duration_s"),
                     "approved_by": (lp.approval or {}).get("user_id")})
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['name']:<40} {r['from']} -> {r['to']}  {r['status']}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``motion`` and its sub-commands on a ``cellctl`` sub-parser set."""
    m = sub.add_parser("motion", help="motion library: plan, approve (QA e-signature), list")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="configuration directory (default: the project's config/)")
    common.add_argument("--library", help="library file (default: CONFIG/motion_library.yaml)")
    ms = m.add_subparsers(dest="motion_command", required=True)
    p = ms.add_parser("plan", parents=[common],
                      help="plan a station-to-station path and write it as proposed")
    p.add_argument("--from", dest="from_pose", required=True)
    p.add_argument("--to", dest="to_pose", required=True)
    p.add_argument("--name")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed-class", choices=("transit", "near_product"), default="transit")
    p.add_argument("--condition", action="append", help="keep-out condition active while planning (repeat)")
    p.add_argument("--by", default="", help="engineer who planned it (recorded, not a signature)")
    p.set_defaults(func=_cmd_plan)
    a = ms.add_parser("approve", parents=[common], help="QA approval with an e-signature")
    a.add_argument("--name", required=True)
    a.add_argument("--user", required=True)
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.set_defaults(func=_cmd_approve)
    r = ms.add_parser("revoke", parents=[common], help="remove an approval")
    r.add_argument("--name", required=True)
    r.set_defaults(func=_cmd_revoke)
    ls = ms.add_parser("list", parents=[common], help="paths and their status")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_cmd_list)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cellctl")
    add_parser(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["motion", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
