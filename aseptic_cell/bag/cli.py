"""``cellctl bag record [TOPIC ...] -o FILE.mcap`` and ``cellctl bag info FILE``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any


def _cmd_record(args: argparse.Namespace) -> int:
    from .recorder import Recorder

    stop = threading.Event()

    def _on_signal(_sig: int, _frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rec = Recorder(args.output, args.topics, exclude=args.exclude or "").start()
        print(f"recording {'every topic' if not args.topics else ', '.join(args.topics)} to {args.output} "
              f"(Ctrl-C to stop)", flush=True)
        stop.wait(args.duration)
        stats = rec.stop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    rate = stats.messages / stats.wall_s if stats.wall_s > 0 else 0.0
    print(f"{stats.path}: {stats.messages} messages on {len(stats.counts)} topics in {stats.wall_s:.1f} s "
          f"({rate:.0f} msg/s)")
    for topic in sorted(stats.counts):
        print(f"  {topic:40s} {stats.types[topic]:40s} {stats.counts[topic]}")
    for topic, why in sorted(stats.skipped.items()):
        print(f"  not recorded: {topic}: {why}", file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .summary import bag_summary

    try:
        s = bag_summary(args.file)
    except (OSError, Exception) as exc:  # mcap raises its own error types on a damaged file
        print(f"{args.file}: cannot read: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"File:      {s['file']}\nProfile:   {s['profile']}\nLibrary:   {s['library']}\n"
          f"Duration:  {s['duration_s']:.3f} s\nMessages:  {s['messages']}\nTopics:    {len(s['topics'])}")
    for topic, t in s["topics"].items():
        print(f"  {topic:40s} {t['type']:40s} {t['encoding']:5s} {t['count']}")
    return 0


def add_bag_parser(sub: Any) -> None:
    b = sub.add_parser("bag", help="record ROS 2 topics to MCAP (ros2 bag's format) / summarise a recording")
    bs = b.add_subparsers(dest="bag_command", required=True)
    r = bs.add_parser("record", help="record topics (default: every topic) until Ctrl-C or --duration")
    r.add_argument("topics", nargs="*", help="topic names (default: all)")
    r.add_argument("-o", "--output", required=True, help="the .mcap file to write")
    r.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    r.add_argument("--exclude", help="regular expression of topics not to record")
    r.set_defaults(func=_cmd_record)
    i = bs.add_parser("info", help="summarise an MCAP recording")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)
