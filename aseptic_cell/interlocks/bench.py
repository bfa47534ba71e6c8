"""Time ``InterlockEngine.check`` and ``evaluate_all`` on the shipped catalogue.

Run: ``python -m aseptic_cell.interlocks.bench [config_dir]``. Prints figures; asserts nothing.
Two worlds: every rule satisfied (each clause evaluated, no explanation built) and every
signal missing (every rule denies and builds its full explanation: the worst case).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from aseptic_cell.config.interlocks import Comparison, iter_comparisons
from aseptic_cell.config.loader import default_config_dir, load_config

from .engine import InterlockEngine


def _satisfying(c: Comparison, params: dict[str, float]) -> Any:
    x: Any = params[c.param] if c.param is not None else c.value
    if c.op == "in":
        return x[0]
    if c.op == "ne":
        return (not x) if isinstance(x, bool) else (x + 1 if isinstance(x, float) else f"not-{x}")
    return {"lt": x - 0.5, "gt": x + 0.5}.get(c.op, x) if not isinstance(x, (bool, str)) else x


def _fill_safe(eng: InterlockEngine, t: float) -> None:
    for st in eng.evaluate_all():
        rule = next(r for r in eng.catalogue.rules if r.id == st.rule_id)
        for c in iter_comparisons(rule.when):
            name = c.signal
            for k, v in st.binding.items():
                name = name.replace("{" + k + "}", v)
            eng.signals.update(name, _satisfying(c, eng.catalogue.parameters), t, name.split(".")[0])


def _time(fn: Callable[[], object], n: int) -> tuple[float, float]:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    runs.sort()
    return runs[0], runs[2]


def main(argv: list[str]) -> None:
    cfg = load_config(argv[0] if argv else default_config_dir())
    actions = [("arm.move", {}), ("hatch.open_door", {"door": "A"}), ("batch.start", {}),
               ("autoclave.open_unload", {}), ("product.open_container", {})]
    worlds = (("every rule satisfied", True), ("every signal missing (all deny, explained)", False))
    for label, safe in worlds:
        eng = InterlockEngine.from_config(cfg, lambda: 100.0)
        if safe:
            _fill_safe(eng, 100.0)
        print(f"-- {label}")
        for action, args in actions:
            d = eng.check(action, args)
            best, med = _time(functools.partial(eng.check, action, args), 5000)
            print(f"check({action!r}, {args}) allowed={d.allowed}: min {best:.1f} us, median {med:.1f} us")
        n = len(eng.evaluate_all())
        best, med = _time(eng.evaluate_all, 1000)
        print(f"evaluate_all() [{len(cfg.interlocks.rules)} rules, {n} instances]: "
              f"min {best:.1f} us, median {med:.1f} us")


if __name__ == "__main__":
    main(sys.argv[1:])
