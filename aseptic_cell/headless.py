"""Headless run of the simulated cell, in one process (``cellctl sim``).

Prepares the isolator (enclosure leak test, robot to its decon pose with drives off, gloves
extended), then runs a VHP decontamination cycle of the isolator and, at the same time, an
autoclave sterilisation program, at accelerated sim time, printing progress; ends with a
summary of both cycle results. Exit code 0 only if both cycles PASS.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from .sim.cell import SimCell


def _hms(t: float) -> str:
    t = int(t)
    return f"{t // 3600:d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def run_headless(cfg: Any, *, speed: float | None = None, json_out: bool = False,
                 vhp_cycle: str | None = None, autoclave_program: str | None = None,
                 progress_every_s: float = 600.0, out=sys.stdout) -> int:
    """Run one VHP cycle and one autoclave program on the simulated cell.

    Args:
        speed: sim seconds per wall second (None: cell.yaml ``sim.speedup``; inf: as fast as possible).
    """
    speed = cfg.layout.sim.speedup if speed is None else speed
    cell = SimCell(cfg)
    step = cfg.layout.sim.step_s
    iso, vhp, ac, arm = cell.isolator, cell.vhp, cell.autoclave, cell.arm
    say = (lambda *a: None) if json_out else (lambda msg: print(msg, file=out, flush=True))
    wall0 = time.monotonic()
    sim0 = cell.now()

    def advance(seconds: float | None = None, until=None, timeout: float = 7200.0) -> bool:
        end = cell.now() + (seconds if seconds is not None else timeout)
        last = cell.now()
        while cell.now() < end:
            if until is not None and until():
                return True
            cell.step(step)
            if cell.now() - last >= progress_every_s:
                last = cell.now()
                s, a = vhp.sensors(), ac.sensors()
                say(f"  t={_hms(cell.now())}  VHP {s['phase']:<13} H2O2 {s['h2o2_ppm']:7.1f} ppm "
                    f"RH {s['rh_pct']:5.1f} %  | autoclave {a['phase']:<14} {a['chamber_t_c']:6.1f} C "
                    f"F0 {a['f0_min']:6.1f} min")
            if math.isfinite(speed):
                lag = (cell.now() - sim0) / speed - (time.monotonic() - wall0)
                if lag > 0.005:
                    time.sleep(lag)
        return until() if until is not None else True

    say(f"aseptic_cell simulated cell {cfg.layout.cell.id}: speed "
        f"{'max' if not math.isfinite(speed) else f'{speed:g}x'}, step {step:g} s")
    say("preparing: enclosure leak test, robot to decon pose (drives off), gloves extended")
    iso.start_leak_test()
    arm.enable_drives()
    arm.move_to_pose("decon")
    for g in cfg.layout.isolator.glove_ports:
        iso.extend_glove(g.id)
    ok = advance(until=lambda: iso.leak_test_passed() and not arm.moving, timeout=1800)
    arm.disable_drives()
    if not ok:
        say("FAILED: enclosure leak test did not pass or the robot did not reach its decon pose")
        return 1
    cycle_id = vhp_cycle or cfg.vhp_cycles.cycles[0].id
    program_id = autoclave_program or next(p.id for p in cfg.autoclave_programs.programs if p.kind == "sterilise")
    say(f"starting VHP cycle {cycle_id} and autoclave program {program_id}")
    ac.close_door("load")
    ac.close_door("unload")
    advance(seconds=30)
    cell.command(cfg.layout.vhp_unit.id, "start_cycle", {"cycle_id": cycle_id, "operator": "system"})
    cell.command(cfg.layout.autoclave.id, "start_program",
                 {"program_id": program_id, "load_id": "LOAD-DEMO-01", "operator": "system"})
    done = advance(until=lambda: vhp.last_result is not None and ac.last_result is not None, timeout=6 * 3600)
    vr, ar = vhp.last_result, ac.last_result
    summary = {
        "result": "PASS" if done and vr and ar and vr.result == "PASS" and ar.result == "PASS" else "FAIL",
        "sim_time_s": round(cell.now() - sim0, 1),
        "wall_time_s": round(time.monotonic() - wall0, 2),
        "vhp": {"cycle_id": cycle_id, "result": vr.result if vr else "NOT FINISHED",
                "aeration_end_ppm": getattr(vr, "aeration_end_ppm", None) if vr else None,
                "reasons": list(getattr(vr, "reasons", []) or []) if vr else []},
        "autoclave": {"program_id": program_id, "result": ar.result if ar else "NOT FINISHED",
                      "f0_min": round(ar.f0_min, 2) if ar else None,
                      "reasons": list(getattr(ar, "reasons", []) or []) if ar else []},
        "isolator_decon_status": iso.decon_status.value,
    }
    if json_out:
        print(json.dumps(summary), file=out)
    else:
        say(f"VHP cycle {cycle_id}: {summary['vhp']['result']} "
            f"(aeration end {summary['vhp']['aeration_end_ppm']} ppm); "
            f"isolator {summary['isolator_decon_status']}")
        say(f"autoclave {program_id}: {summary['autoclave']['result']} (F0 {summary['autoclave']['f0_min']} min)")
        say(f"{summary['result']}: {summary['sim_time_s']:.0f} sim s in {summary['wall_time_s']:.1f} wall s")
    return 0 if summary["result"] == "PASS" else 1
