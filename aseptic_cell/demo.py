"""``cellctl demo``: start the real node graph and run one batch sequence end to end in sim time.

Sequence (every step through the device nodes' services and actions, so every interlock
applies): start-of-batch glove tests → enclosure leak test → robot to its decon pose with
drives off, gloves extended → VHP decontamination of the isolator, and at the same time
material in through the autoclave (load door → P121-15 → clean-side door only after PASS)
→ patient bag in through the RTP (beta docked and locked before alpha opens) → robot task
park → RTP → incubator → park through collision-checked trajectories → RTP closed and
undocked → end-of-batch glove tests.

Every command, refusal and cycle result published on ``/cell/events`` is appended to a
hash-chained batch record (SQLite); its path is in the summary.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .client import CellClient


class DemoFailed(Exception):
    pass


class _WallClock:
    def now(self) -> float:
        return time.time()


def _ok(reply: Any, what: str) -> Any:
    if not reply.accepted:
        raise DemoFailed(f"{what} refused: {reply.code}: {reply.reason}")
    return reply


def run_sequence(client: CellClient, cfg: Any, *, batch_id: str, say=print, cycle_timeout_s: float = 900.0) -> dict:
    """Drive one batch sequence through the graph; returns the cycle results."""
    iso_cfg = cfg.layout.isolator
    ports = [g.id for g in iso_cfg.glove_ports]
    rtp = iso_cfg.rtps[0].id
    poses = cfg.arm.poses
    results: dict[str, Any] = {}

    say("waiting for device states")
    for n in ("isolator", "vhp", "autoclave", "arm"):
        client.wait_state(n, lambda s: s.comm_ok, 30.0, f"{n} state")

    say("start-of-batch glove integrity tests")
    for p in ports:
        _ok(client.glove(p, "test", user="op1", reason="start of batch (Annex 1 §4.24)"), f"glove test {p}")
    client.wait_state("isolator", lambda s: all(g.last_test_result == "PASS" for g in s.glove_ports), 120.0,
                      "all glove tests PASS")
    say("enclosure leak test")
    _ok(client.command("isolator", "start_leak_test", user="op1"), "leak test")
    client.wait_state("isolator", lambda s: s.leak_test_result == "PASS", 120.0, "enclosure leak test PASS")

    say("robot to its decon pose, drives off; gloves extended")
    _ok(client.command("arm", "enable_drives", user="op1"), "enable drives")
    _ok(client.move_arm("decon", poses["decon"], user="op1"), "move to decon pose")
    _ok(client.command("arm", "disable_drives", user="op1"), "disable drives")
    for p in ports:
        _ok(client.glove(p, "extend", user="op1"), f"extend glove {p}")

    say("VHP decontamination of the isolator + material in through the autoclave")
    _ok(client.door("autoclave", "autoclave_load", "open", user="op1", reason="load consumables"), "open load door")
    client.wait_state("autoclave", lambda s: s.door_load_open, 60.0, "load door open")
    _ok(client.door("autoclave", "autoclave_load", "close", user="op1"), "close load door")
    client.wait_state("autoclave", lambda s: s.door_load_gasket_ok, 60.0, "load door sealed")

    import threading

    ac_result: dict[str, Any] = {}
    program = next(p.id for p in cfg.autoclave_programs.programs if p.kind == "sterilise")
    t_ac = threading.Thread(target=lambda: ac_result.update(
        r=client.run_cycle("autoclave", program, batch_id=batch_id, timeout_s=cycle_timeout_s)), daemon=True)
    t_ac.start()
    vhp_cycle = cfg.vhp_cycles.cycles[0].id
    vr = client.run_cycle("vhp", vhp_cycle, batch_id=batch_id, timeout_s=cycle_timeout_s)
    t_ac.join(cycle_timeout_s)
    ar = ac_result.get("r")
    if vr is None or ar is None:
        raise DemoFailed("a cycle action did not finish")
    vrep, arep = json.loads(vr.json_report or "{}"), json.loads(ar.json_report or "{}")
    results["vhp"] = {"cycle_id": vhp_cycle, "result": vr.result, "aeration_end_ppm": vrep.get("aeration_end_ppm"),
                      "run_id": vrep.get("run_id"), "reasons": vrep.get("reasons", [])}
    results["autoclave"] = {"program_id": program, "result": ar.result, "f0_min": arep.get("f0_min"),
                            "run_id": arep.get("run_id"), "reasons": arep.get("reasons", [])}
    say(f"  VHP {vhp_cycle}: {vr.result} (aeration end {vrep.get('aeration_end_ppm')} ppm)")
    say(f"  autoclave {program}: {ar.result} (F0 {arep.get('f0_min')} min)")
    if not (vr.success and ar.success):
        raise DemoFailed(f"cycle failed: VHP {vr.result} {vr.reason}; autoclave {ar.result} {ar.reason}")
    client.wait_state("isolator", lambda s: s.decon_status == "DECONTAMINATED_RELEASED", 30.0, "isolator released")

    say("transfer in from the autoclave clean side")
    _ok(client.door("autoclave", "autoclave_unload", "open", user="op1", reason="transfer in"), "open unload door")
    client.wait_state("autoclave", lambda s: s.door_unload_open, 60.0, "unload door open")
    _ok(client.door("autoclave", "autoclave_unload", "close", user="op1"), "close unload door")
    client.wait_state("autoclave", lambda s: s.door_unload_gasket_ok, 60.0, "unload door sealed")

    say("patient bag in through the RTP")
    for p in ports:
        _ok(client.glove(p, "retract", user="op1"), f"retract glove {p}")
    _ok(client.port(rtp, "dock_beta", beta_id=f"BETA-{batch_id}", sterile="sterile", user="op1"), "dock beta")
    _ok(client.port(rtp, "lock_beta", user="op1"), "lock beta")
    client.wait_state("isolator", lambda s: s.rtps[0].beta_locked, 60.0, "beta locked")
    _ok(client.port(rtp, "open_alpha", user="op1"), "open alpha")
    client.wait_state("isolator", lambda s: s.rtps[0].alpha_open, 60.0, "alpha open")

    say("robot task: bag from the RTP to the incubator")
    _ok(client.command("arm", "enable_drives", user="op1"), "enable drives")
    route = ["park", "rtp_pick", "park", "incubator_approach", "incubator_place", "incubator_approach", "park"]
    for pose in route:
        _ok(client.move_arm(pose, poses[pose], user="op1"), f"move to {pose}")
    _ok(client.command("arm", "disable_drives", user="op1"), "disable drives")

    say("close the RTP")
    _ok(client.port(rtp, "close_alpha", user="op1"), "close alpha")
    client.wait_state("isolator", lambda s: not s.rtps[0].alpha_open, 60.0, "alpha closed")
    _ok(client.port(rtp, "unlock_beta", user="op1"), "unlock beta")
    client.wait_state("isolator", lambda s: not s.rtps[0].beta_locked, 60.0, "beta unlocked")
    _ok(client.port(rtp, "undock_beta", user="op1"), "undock beta")

    say("end-of-batch glove integrity tests")
    before = {g.port_id: g.last_test_age_h for g in client.state("isolator").glove_ports}
    for p in ports:
        _ok(client.glove(p, "test", user="op1", reason="end of batch (IL-06)"), f"glove test {p}")
    client.wait_state("isolator", lambda s: all(g.last_test_result == "PASS" and g.last_test_age_h < before[g.port_id]
                                                for g in s.glove_ports), 120.0, "end-of-batch glove tests")
    return results


def record_events(record: Any, batch_id: str, events: list[dict[str, Any]]) -> int:
    n = 0
    kinds = {"command": "command", "refusal": "refusal", "cycle_result": "cycle_result", "latched": "trip",
             "recovered": "command", "comm_lost": "alarm"}
    for ev in events:
        kind = kinds.get(ev.get("event", ""))
        if kind is None:
            continue
        payload = {k: v for k, v in ev.items() if k not in ("event",) and v is not None
                   and not (isinstance(v, float) and not math.isfinite(v))}
        record.append(kind, batch_id=batch_id, actor=str(ev.get("user") or "system"),
                      action=f"{ev.get('device', '')}.{ev.get('command', ev.get('event'))}",
                      reason=str(ev.get("detail") or ev.get("reason") or ""), payload=payload)
        n += 1
    return n


def run_demo(config_dir: str, *, speed: float, json_out: bool = False, record_dir: str | None = None,
             log_dir: str | None = None, domain_id: int | None = None) -> int:
    from .config import load_config
    from .launcher import CellProcesses, wait_for_nodes
    from .nodes.graph import default_graph
    from .records import BatchRecord

    cfg = load_config(config_dir)
    say = (lambda *a: None) if json_out else (lambda m: print(m, flush=True))
    batch_id = time.strftime("B%Y%m%d-%H%M%S")
    record_dir = record_dir or os.path.join(os.getcwd(), "records")
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    record_path = str(Path(record_dir) / f"{batch_id}.db")
    log_dir = log_dir or tempfile.mkdtemp(prefix="aseptic_cell-demo-")
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    specs = default_graph(config_dir, speed=speed)
    wall0 = time.monotonic()
    summary: dict[str, Any] = {"result": "FAIL", "batch_id": batch_id, "record": record_path, "logs": log_dir}
    code = 1
    with CellProcesses(specs, env=env, log_dir=log_dir) as procs:
        client = CellClient(domain_id=domain_id)
        try:
            say(f"starting the node graph ({len(specs)} processes; logs in {log_dir})")
            wait_for_nodes(specs, timeout_s=90.0, check=lambda: _no_deaths(procs))
            t_up = time.monotonic() - wall0
            say(f"graph ACTIVE after {t_up:.1f} s")
            sim0 = _sim_time(client)
            run0 = time.monotonic()
            results = run_sequence(client, cfg, batch_id=batch_id, say=say)
            summary.update(result="PASS", **results)
            code = 0
        except (DemoFailed, TimeoutError) as exc:
            summary["error"] = str(exc)
            say(f"FAILED: {exc}")
            t_up = summary.get("bringup_s", math.nan)
            run0 = time.monotonic()
            sim0 = math.nan
        finally:
            sim1 = _sim_time(client)
            summary["bringup_s"] = round(t_up, 2) if isinstance(t_up, float) else t_up
            summary["sim_time_s"] = round(sim1 - sim0, 1) if math.isfinite(sim0) else None
            summary["wall_time_s"] = round(time.monotonic() - run0, 2)
            summary["speedup"] = (round(summary["sim_time_s"] / summary["wall_time_s"], 1)
                                  if summary["sim_time_s"] and summary["wall_time_s"] > 0 else None)
            events = list(client.events)
            summary["refusals"] = [{"device": e.get("device"), "command": e.get("command"), "code": e.get("code"),
                                    "reason": e.get("detail")} for e in events if e.get("event") == "refusal"]
            with BatchRecord(record_path, _WallClock()) as rec:
                rec.append("note", batch_id=batch_id, actor="system", action="demo.start",
                           reason="cellctl demo batch sequence")
                summary["record_entries"] = record_events(rec, batch_id, events) + 1
                rec.append("note", batch_id=batch_id, actor="system", action="demo.end",
                           reason=summary["result"], payload={"error": summary.get("error", "")})
                summary["record_verified"] = rec.verify().ok
            client.close()
        exits = procs.stop()
    summary["exit_codes"] = exits
    if any(c != 0 for c in exits.values()):
        summary["result"] = "FAIL"
        summary.setdefault("error", f"unclean process exit: {exits}")
        code = 1
    if json_out:
        print(json.dumps(summary))
    else:
        say(f"{summary['result']}: batch {batch_id}; {summary['sim_time_s']} sim s in {summary['wall_time_s']} wall s "
            f"(x{summary['speedup']}); refusals {len(summary['refusals'])}; record {record_path}")
    return code


def _no_deaths(procs: Any) -> None:
    dead = procs.poll()
    if dead:
        raise DemoFailed(f"process(es) exited during bring-up: {dead}")


def _sim_time(client: CellClient) -> float:
    s = client.state("isolator")
    if s is None:
        return math.nan
    return s.stamp.sec + s.stamp.nanosec * 1e-9
