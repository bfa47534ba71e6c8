"""Cycle plots for the batch report (matplotlib, Agg backend, PNG bytes): the VHP concentration
profile and the autoclave chamber/load temperatures with the accumulated F0."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

MAX_POINTS = 2000
"""Longer series are thinned (every n-th point) before plotting."""


def _series(s: Any) -> list[float] | None:
    if not isinstance(s, list) or not s:
        return None
    try:
        return [float("nan") if v is None else float(v) for v in s]
    except (TypeError, ValueError):
        return None


def _thin(*series: Sequence[float]) -> list[list[float]]:
    n = len(series[0])
    step = max(1, n // MAX_POINTS)
    return [list(s[::step]) for s in series]


def cycle_plot(cycle: dict[str, Any]) -> bytes | None:
    """PNG of a cycle result's recorded series, or None when it recorded none."""
    series = cycle.get("series")
    if not isinstance(series, dict):
        return None
    t = _series(series.get("t"))
    if t is None:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    t0 = t[0]
    minutes = [(x - t0) / 60.0 for x in t]
    fig = Figure(figsize=(7.0, 2.8), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    kind = cycle.get("cycle")
    plotted = False
    if kind == "vhp":
        for key, label in (("h2o2_ppm", "H2O2 sensor A (ppm)"), ("h2o2_ppm_b", "H2O2 sensor B (ppm)"),
                           ("h2o2_residual_ppm", "residual sensor (ppm)")):
            ys = _series(series.get(key))
            if ys is not None and len(ys) == len(t):
                x, y = _thin(minutes, ys)
                ax.plot(x, y, label=label, linewidth=1.0)
                plotted = True
        ax.set_ylabel("H2O2 (ppm)")
        ax.set_title(f"VHP {cycle.get('run_id', '')} ({cycle.get('recipe_id', '')}): concentration profile")
    elif kind == "autoclave":
        for key, label in (("chamber_t_c", "chamber (°C)"), ("load_t_c", "load probe (°C)")):
            ys = _series(series.get(key))
            if ys is not None and len(ys) == len(t):
                x, y = _thin(minutes, ys)
                ax.plot(x, y, label=label, linewidth=1.0)
                plotted = True
        ax.set_ylabel("temperature (°C)")
        f0 = _series(series.get("f0_min"))
        if f0 is not None and len(f0) == len(t):
            ax2 = ax.twinx()
            x, y = _thin(minutes, f0)
            ax2.plot(x, y, color="black", linestyle="--", linewidth=1.0, label="F0 (min)")
            target = cycle.get("f0_target_min")
            if isinstance(target, (int, float)):
                ax2.axhline(float(target), color="red", linestyle=":", linewidth=0.8, label="F0 target")
            ax2.set_ylabel("F0 (min)")
            ax2.legend(loc="lower right", fontsize=7)
            plotted = True
        ax.set_title(f"Autoclave {cycle.get('run_id', '')} ({cycle.get('program_id', '')}): temperature and F0")
    if not plotted:
        return None
    ax.set_xlabel("minutes from cycle start")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
