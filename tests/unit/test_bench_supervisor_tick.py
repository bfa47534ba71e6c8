"""benchmarks/supervisor_tick.py runs (a few ticks, 2 patient batches): its JSON shape, and that the
batches it timed were actually in progress. No timing is asserted (figures go to the benchmark)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import py_trees
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "supervisor_tick.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_supervisor_tick", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)
    py_trees.blackboard.Blackboard.clear()


STATS = {"p50", "p95", "p99", "max"}


def test_measure_two_batches_times_ticks_while_both_are_in_progress(bench, tmp_path):
    r = bench.measure(2, 6, workdir=str(tmp_path))
    json.dumps(r)  # JSON-able as it is
    assert r["batches_requested"] == 2 and r["batches_admitted"] == 2
    assert r["ticks"] == 6
    assert r["in_progress"] == {"min": 2, "median": 2, "max": 2}  # both batches in progress at every timed tick
    assert set(r["per_batch_at_end"]) == {"P01", "P02"}
    assert all(b["state"] == "Running" and b["phase"] for b in r["per_batch_at_end"].values())
    assert r["state_share"] == {"Running": 1.0}
    assert r["phases_in_window"] and all(set(bs) <= {"P01", "P02"} for bs in r["phases_in_window"].values())
    assert abs(sum(r["doing_share"].values()) - 1.0) < 0.01
    assert set(r["doing_share"]) <= {"incubation", "working_open", "working_closed", "waiting", "starting"}
    assert bool(r["wait_reasons_top"]) == ("waiting" in r["doing_share"])  # a wait says why
    for key in ("tick_wall_ms", "tick_cpu_ms"):
        assert set(r[key]) == STATS and 0 < r[key]["p50"] <= r[key]["p99"] <= r[key]["max"]
    assert r["rules"] > 0 and r["segregation_violations"] == 0
    assert r["window_sim_s"][1] - r["window_sim_s"][0] == pytest.approx(6 * 2.0)


def test_main_json_prints_one_object_with_each_batch_count_and_the_profile(bench, capsys):
    code = bench.main(["--batches", "1", "2", "--ticks", "3", "--json", "--profile"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 1
    out = json.loads(lines[0])
    assert set(out["runs"]) == {"1", "2"} and out["target_batches"] == 2 and out["p99_target_ms"] == 2.0
    assert "Supervisor.tick()" in out["measured"]
    assert out["in_progress_at_target_batches"]["min"] == 2
    prof = out["runs"]["2"]["profile"]
    assert any("tick" in ln for ln in prof["cumulative"]) and prof["tottime"]
    assert "profile" not in out["runs"]["1"]
