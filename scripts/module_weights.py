#!/usr/bin/env python3
"""Turn a pytest JUnit XML report into tests/module_weights.json: the worker seconds of each test
module (set-up, call and teardown of its tests summed), which tests/conftest.py uses to start the
longest modules first under xdist.

    make test PYTEST_ARGS="--junitxml=/tmp/suite.xml"
    .venv/bin/python scripts/module_weights.py /tmp/suite.xml          # writes tests/module_weights.json
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_of(classname: str) -> str | None:
    """``tests.unit.test_x.TestClass`` -> ``tests/unit/test_x.py`` (the longest prefix that is a file)."""
    parts = classname.split(".")
    for n in range(len(parts), 0, -1):
        rel = "/".join(parts[:n]) + ".py"
        if (ROOT / rel).is_file():
            return rel
    return None


def weights(junit: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        mod = module_of(case.get("classname", ""))
        if mod is not None:
            out[mod] = out.get(mod, 0.0) + float(case.get("time", "0") or 0.0)
    return dict(sorted(((k, round(v, 1)) for k, v in out.items()), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("junit", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "tests" / "module_weights.json")
    args = ap.parse_args(argv)
    mods = weights(args.junit)
    if not mods:
        print(f"no test modules found in {args.junit}", file=sys.stderr)
        return 1
    body = {"source": f"junit report, {len(mods)} modules, {sum(mods.values()):.0f} worker s", "modules": mods}
    args.out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(mods)} modules, {sum(mods.values()):.0f} worker s; top: "
          + ", ".join(f"{k} {v:.0f}s" for k, v in list(mods.items())[:5]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
