"""``cellctl demo``: start the real node graph (sim world, device nodes, lifecycle manager and
the supervisor) and run one batch of a master recipe through the supervisor's RunBatch action
(``/cell/batch/run``): the batch tree drives the devices, every interlock applies, and the
supervisor writes the hash-chained batch record.

With ``--scenario FILE`` the scenario's operator actions (``/cell/operate``), direct device
commands (``/cell/<node>/command``), faults (``/sim/fault``) and batch commands
(``/cell/batch/command``) are applied at their sim times or events while the batch runs; the
summary reports the batch outcome, trips, refusals, alarms, the phase timeline and whether
the scenario's expectations held.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .client import CellClient


class DemoFailed(Exception):
    pass


def run_demo(config_dir: str, *, speed: float, json_out: bool = False, record_dir: str | None = None,
             log_dir: str | None = None, domain_id: int | None = None, scenario: str | None = None,
             recipe_id: str | None = None) -> int:
    from .config import load_config
    from .launcher import CellProcesses, wait_for_nodes
    from .nodes.graph import default_graph
    from .nodes.supervisor_node import supervisor_spec
    from .supervisor.scenario import ScenarioError, load_scenario, recipe_ref

    cfg = load_config(config_dir)
    say = (lambda *a: None) if json_out else (lambda m: print(m, flush=True))
    sc = sc_path = None
    if scenario:
        try:
            sc, sc_path = load_scenario(scenario)
        except ScenarioError as exc:  # refused before anything starts: nothing moves
            out = {"result": "INVALID", "error": "scenario file is invalid", "problems": exc.problems}
            print(json.dumps(out) if json_out else "\n".join(["scenario file is INVALID:", *exc.problems]))
            return 2
    recipe = recipe_ref(sc, sc_path, cfg) if sc is not None else (recipe_id or "CART-TRANSDUCTION")
    batch_id = (sc.batch_id if sc is not None else "B") + time.strftime("-%Y%m%d-%H%M%S")
    record_dir = str(Path(record_dir or os.path.join(os.getcwd(), "records")).resolve())
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or tempfile.mkdtemp(prefix="aseptic_cell-demo-")
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    specs = default_graph(config_dir, speed=speed, extra=[supervisor_spec(config_dir, record_dir)])
    summary: dict[str, Any] = {"result": "FAIL", "batch_id": batch_id, "recipe": recipe, "logs": log_dir}
    if sc is not None:
        summary.update(scenario=sc.id, interlock=sc.interlock)
    code = 1
    wall0 = time.monotonic()
    with CellProcesses(specs, env=env, log_dir=log_dir) as procs:
        client = CellClient(domain_id=domain_id)
        sup_state: dict[str, Any] = {}
        try:
            from std_msgs.msg import String

            client.node.create_subscription(String, "/cell/supervisor/signals",
                                            lambda m: sup_state.update(json.loads(m.data)), 10)
            say(f"starting the node graph ({len(specs)} processes; logs in {log_dir})")
            wait_for_nodes(specs, timeout_s=120.0, check=lambda: _no_deaths(procs), domain_id=domain_id)
            summary["bringup_s"] = round(time.monotonic() - wall0, 2)
            for n in ("isolator", "vhp", "autoclave", "arm"):
                client.wait_state(n, lambda s: s.comm_ok, 60.0, f"{n} state")
            client.wait_for(lambda: "t" in sup_state and len(sup_state.get("signals", {})) > 20, 60.0,
                            "supervisor signals")
            say(f"graph up after {summary['bringup_s']} s; running batch {batch_id} of {recipe} via /cell/batch/run")
            sim0, run0 = _sim_time(client), time.monotonic()
            result = _run_batch(client, recipe, batch_id, sc, sup_state, say)
            sim1 = _sim_time(client)
            summary["sim_time_s"] = round(sim1 - sim0, 1) if math.isfinite(sim0) else None
            summary["wall_time_s"] = round(time.monotonic() - run0, 2)
            summary["speedup"] = (round(summary["sim_time_s"] / summary["wall_time_s"], 1)
                                  if summary["sim_time_s"] and summary["wall_time_s"] > 0 else None)
            body = json.loads(result.json_summary or "{}") if result is not None else {}
            summary.update({k: body.get(k) for k in ("batch_state", "held_reason", "vhp", "autoclave", "trips",
                                                     "refusals", "alarms", "timeline")})
            summary["record"] = result.record_path if result is not None else ""
            summary["state"] = result.state if result is not None else "UNKNOWN"
            if sc is None:
                summary["result"] = "PASS" if result is not None and result.success else "FAIL"
                if summary["result"] != "PASS":
                    summary["error"] = result.reason if result is not None else "no RunBatch result"
            else:
                from .supervisor.scenario import evaluate

                summary["events"] = sup_state.get("_fired", [])
                def latched_now() -> dict[str, bool]:
                    return {n: "latched" in (client.state(n).lifecycle_state if client.state(n) else "")
                            for n in ("isolator", "vhp", "autoclave", "arm")}

                if sc.expect.devices_latched:  # the 10 Hz device states lag the safe_state commands
                    try:
                        client.wait_for(lambda: all(latched_now().values()), 5.0, "devices latched")
                    except TimeoutError:
                        pass
                latched = latched_now()
                summary["latched"] = latched
                failures = evaluate(sc, {**summary, "batch_state": body.get("batch_state")}, latched)
                summary["failures"] = failures
                summary["result"] = "PASS" if not failures else "FAIL"
            code = 0 if summary["result"] == "PASS" else 1
            if summary.get("record"):
                from .records import verify_file

                summary["record_verified"] = verify_file(summary["record"]).ok
        except (DemoFailed, TimeoutError) as exc:
            summary["error"] = str(exc)
            say(f"FAILED: {exc}")
        finally:
            client.close()
        exits = procs.stop()
    summary["exit_codes"] = exits
    if any(c != 0 for c in exits.values()):
        summary["result"] = "FAIL"
        summary.setdefault("error", f"unclean process exit: {exits}")
        code = 1
    if json_out:
        print(json.dumps(summary, default=str))
    else:
        say(f"{summary['result']}: batch {batch_id} {summary.get('batch_state')}; {summary.get('sim_time_s')} sim s "
            f"in {summary.get('wall_time_s')} wall s (x{summary.get('speedup')}); trips {len(summary.get('trips') or [])}; "
            f"refusals {len(summary.get('refusals') or [])}; record {summary.get('record')}")
        for f in summary.get("failures", []) or []:
            say(f"  expectation not met: {f}")
    return code


def _run_batch(client: CellClient, recipe: str, batch_id: str, sc: Any, sup_state: dict[str, Any], say: Any) -> Any:
    from cell_interfaces.action import RunBatch

    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["r"] = client.run_action(RunBatch, "/cell/batch/run",
                                         RunBatch.Goal(recipe_id=recipe, batch_id=batch_id, user=sc.user if sc else "op1"),
                                         timeout_s=4 * 3600.0)
        except Exception as exc:  # noqa: BLE001
            box["e"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    if sc is not None:
        _scenario_events(client, sc, sup_state, th, say)
    th.join()
    if "e" in box:
        raise DemoFailed(f"RunBatch: {box['e']}")
    accepted, result = box.get("r", (False, None))
    return result


def _scenario_events(client: CellClient, sc: Any, sup_state: dict[str, Any], th: threading.Thread, say: Any) -> None:
    from cell_interfaces.srv import BatchCommand, DeviceCommand

    from .supervisor.scenario import _fires

    pending = list(enumerate(sc.events))
    armed: dict[int, float] = {}
    fired: list[dict[str, Any]] = []
    sup_state["_fired"] = fired
    t0 = None
    while pending and th.is_alive():
        time.sleep(0.02)
        if "t" not in sup_state:
            continue
        now = float(sup_state["t"])
        t0 = now if t0 is None else t0
        batch = sup_state.get("batch", {})
        signals = sup_state.get("signals", {})
        for i, ev in list(pending):
            if i not in armed and _fires(ev.when, now, t0, batch.get("phase", ""), signals.get,
                                         batch.get("state", "")):
                armed[i] = now + ev.when.delay_s
            if i in armed and now >= armed[i]:
                pending.remove((i, ev))
                try:
                    if ev.operate is not None:
                        o = ev.operate
                        r = client._wait_future(client._client(DeviceCommand, "/cell/operate").call_async(
                            DeviceCommand.Request(device_id=o.node, command=o.command, args_json=json.dumps(o.args),
                                                  user=o.user, reason=o.reason)), 15.0)
                        res = {"accepted": r.accepted, "code": r.code, "reason": r.reason}
                    elif ev.device is not None:
                        d = ev.device
                        r = client.command(d.node, d.command, d.args, user=d.user, reason=d.reason)
                        res = {"accepted": r.accepted, "code": r.code, "reason": r.reason}
                    elif ev.fault is not None:
                        f = ev.fault
                        r = client._wait_future(client._client(DeviceCommand, "/sim/fault").call_async(
                            DeviceCommand.Request(device_id=f.device, command="clear" if f.clear else "inject",
                                                  args_json=json.dumps({"fault": f.fault, **f.params}))), 15.0)
                        res = {"accepted": r.accepted, "code": r.code, "reason": r.reason}
                    else:
                        b = ev.batch
                        r = client._wait_future(client._client(BatchCommand, "/cell/batch/command").call_async(
                            BatchCommand.Request(command=b.command, user=b.user, password=b.password,
                                                 meaning=b.meaning, reason=b.reason)), 30.0)
                        res = {"accepted": r.accepted, "code": r.code, "reason": r.reason}
                except TimeoutError as exc:
                    res = {"accepted": False, "code": "TIMEOUT", "reason": str(exc)}
                fired.append({"t": now, "event": ev.label(), **res})
                say(f"  t={now:.0f} {ev.label()}: {'accepted' if res['accepted'] else 'REFUSED ' + res['code']}")


def _no_deaths(procs: Any) -> None:
    dead = procs.poll()
    if dead:
        raise DemoFailed(f"process(es) exited during bring-up: {dead}")


def _sim_time(client: CellClient) -> float:
    s = client.state("isolator")
    if s is None:
        return math.nan
    return s.stamp.sec + s.stamp.nanosec * 1e-9
