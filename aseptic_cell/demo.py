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
             recipe_id: str | None = None, arm: str | None = None, bag: str | None = None) -> int:
    from .config import load_config
    from .launcher import CellProcesses, wait_for_nodes
    from .nodes.graph import default_graph
    from .nodes.supervisor_node import supervisor_spec
    from .supervisor.recipes import resolve_recipe
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
    # load_scenario sets both or neither
    recipe = (
        recipe_ref(sc, sc_path, cfg) if sc is not None and sc_path is not None else (recipe_id or "CART-TRANSDUCTION")
    )
    batch_id = (sc.batch_id if sc is not None else "B") + time.strftime("-%Y%m%d-%H%M%S")
    record_dir = str(Path(record_dir or os.path.join(os.getcwd(), "records")).resolve())
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or tempfile.mkdtemp(prefix="aseptic_cell-demo-")
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    # a scenario starts the world at its focus speed and steers it from there (_scenario_events);
    # its runner watches the supervisor at 10 Hz
    specs = default_graph(config_dir, speed=sc.focus_speed if sc is not None else speed,
                          extra=[supervisor_spec(config_dir, record_dir, publish_hz=10.0 if sc is not None else 2.0)])
    from .physics.demo_hook import DemoExtras  # --arm ENGINE, --bag FILE (issue 16)

    extras = DemoExtras(config_dir, arm=arm, bag=bag, speed=speed, domain_id=domain_id)
    specs = extras.specs(specs)
    summary: dict[str, Any] = {"result": "FAIL", "batch_id": batch_id, "recipe": recipe, "logs": log_dir}
    if sc is not None:
        summary.update(scenario=sc.id, interlock=sc.interlock)
    code = 1
    wall0 = time.monotonic()
    extras.start()
    with CellProcesses(specs, env=env, log_dir=log_dir) as procs:
        client = CellClient(domain_id=domain_id)
        extras.attach(client)
        sup_state: dict[str, Any] = {}
        try:
            from std_msgs.msg import String

            def on_sup(m: Any) -> None:
                sup_state.update(json.loads(m.data))
                sup_state["_n"] = sup_state.get("_n", 0) + 1

            client.node.create_subscription(String, "/cell/supervisor/signals", on_sup, 10)
            say(f"starting the node graph ({len(specs)} processes; logs in {log_dir})")
            wait_for_nodes(specs, timeout_s=120.0, check=lambda: _no_deaths(procs), domain_id=domain_id)
            summary["bringup_s"] = round(time.monotonic() - wall0, 2)
            for n in ("isolator", "vhp", "autoclave", "arm"):
                client.wait_state(n, lambda s: s.comm_ok, 60.0, f"{n} state")
            client.wait_for(lambda: "t" in sup_state and len(sup_state.get("signals", {})) > 20, 60.0,
                            "supervisor signals")
            say(f"graph up after {summary['bringup_s']} s; running batch {batch_id} of {recipe} via /cell/batch/run")
            sim0, run0 = _sim_time(client), time.monotonic()
            phase_order = ([ph.id for _u, _o, ph in resolve_recipe(recipe, cfg).phases()]
                           if sc is not None else [])
            max_speed = 0.0 if math.isinf(speed) else float(speed)
            result = _run_batch(client, recipe, batch_id, sc, sup_state, say, phase_order, max_speed)
            sim1 = _sim_time(client)
            summary["sim_time_s"] = round(sim1 - sim0, 1) if math.isfinite(sim0) else None
            summary["wall_time_s"] = round(time.monotonic() - run0, 2)
            summary["speedup"] = (round(summary["sim_time_s"] / summary["wall_time_s"], 1)
                                  if summary["sim_time_s"] and summary["wall_time_s"] > 0 else None)
            body = json.loads(result.json_summary or "{}") if result is not None else {}
            if sc is not None:  # events after a Held batch's RunBatch result are in the summary now
                body = _batch_summary(client) or body
            summary.update({k: body.get(k) for k in ("batch_state", "held_reason", "vhp", "autoclave", "trips",
                                                     "refusals", "alarms", "timeline", "record_status")})
            summary["record"] = result.record_path if result is not None else ""
            summary["state"] = result.state if result is not None else "UNKNOWN"
            if sc is None:
                summary["result"] = "PASS" if result is not None and result.success else "FAIL"
                if summary["result"] != "PASS":
                    summary["error"] = result.reason if result is not None else "no RunBatch result"
            else:
                from .supervisor.scenario import evaluate

                summary["events"] = sup_state.get("_fired", [])
                summary["sim_speeds"] = sup_state.get("_speeds", [])
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
                observed = sup_state.get("_observed_state") or body.get("batch_state")
                summary["observed_batch_state"] = observed
                summary["observed_at_t"] = sup_state.get("_observed_t")
                failures = evaluate(sc, {**summary, "batch_state": observed}, latched)
                failures += [f"event never fired before the batch ended: {e}" for e in sup_state.get("_unfired", [])]
                summary["failures"] = failures
                summary["result"] = "PASS" if not failures else "FAIL"
            code = 0 if summary["result"] == "PASS" else 1
            if summary.get("record"):
                from .records import verify_file

                summary["record_verified"] = verify_file(summary["record"]).ok
            # a batch never passes with an incomplete record (an append refused, a WAL found
            # truncated: issue 12) nor with a record file that does not verify
            status = summary.get("record_status") or {}
            summary["record_complete"] = bool(status.get("complete")) and bool(summary.get("record_verified"))
            if not summary["record_complete"] and summary.get("result") == "PASS":
                summary["result"] = "FAIL"
                summary["error"] = f"batch record incomplete: {status.get('fault') or 'record does not verify'}"
                code = 1
        except (DemoFailed, TimeoutError) as exc:
            summary["error"] = str(exc)
            say(f"FAILED: {exc}")
        finally:
            client.close()
        exits = procs.stop()
    summary["exit_codes"] = exits
    code = extras.finish(summary, code)
    if any(c != 0 for c in exits.values()):
        summary["result"] = "FAIL"
        summary.setdefault("error", f"unclean process exit: {exits}")
        code = 1
    if json_out:
        print(json.dumps(summary, default=str))
    else:
        say(f"{summary['result']}: batch {batch_id} {summary.get('batch_state')}; {summary.get('sim_time_s')} sim s "
            f"in {summary.get('wall_time_s')} wall s (x{summary.get('speedup')}); "
            f"trips {len(summary.get('trips') or [])}; "
            f"refusals {len(summary.get('refusals') or [])}; record {summary.get('record')}")
        for f in summary.get("failures", []) or []:
            say(f"  expectation not met: {f}")
    return code


def _run_batch(client: CellClient, recipe: str, batch_id: str, sc: Any, sup_state: dict[str, Any], say: Any,
               phase_order: list[str], max_speed: float) -> Any:
    from cell_interfaces.action import RunBatch

    box: dict[str, Any] = {}

    def go() -> None:
        try:
            goal = RunBatch.Goal(recipe_id=recipe, batch_id=batch_id, user=sc.user if sc else "op1")
            box["r"] = client.run_action(RunBatch, "/cell/batch/run", goal, timeout_s=4 * 3600.0)
        except Exception as exc:  # noqa: BLE001
            box["e"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    if sc is not None:
        _scenario_events(client, sc, sup_state, th, say, phase_order, max_speed)
    th.join()
    if "e" in box:
        raise DemoFailed(f"RunBatch: {box['e']}")
    accepted, result = box.get("r", (False, None))
    return result


_FINAL = ("Complete", "Stopped", "Aborted")


def _scenario_events(client: CellClient, sc: Any, sup_state: dict[str, Any], th: threading.Thread, say: Any,
                     phase_order: list[str], max_speed: float) -> None:
    """Fire the scenario's events on the live graph, then observe for ``observe_s`` sim seconds.

    At max speed the world runs thousands of sim seconds per wall second, far faster than any
    operator (or this runner, which sees the supervisor's state at 10 Hz) can act. So the
    runner steers sim_world's speed: ``focus_speed`` while an event is due soon, while its phase
    runs, or while the outcome is observed; ``approach_speed`` during the phase before an
    event's phase; ``max_speed`` otherwise. Events keep firing after RunBatch has returned at
    Held (a held batch is not over). Sim time is paused while an event is applied; after each
    event the runner waits for two supervisor updates, so the next event is judged on states
    that include this one's effect.
    """
    from cell_interfaces.srv import BatchCommand, DeviceCommand

    from .supervisor.scenario import _fires

    pending = list(enumerate(sc.events))
    armed: dict[int, float] = {}
    fired: list[dict[str, Any]] = []
    sup_state["_fired"] = fired
    sup_state["_speeds"] = speeds = []
    t0: float | None = None
    end_t: float | None = None
    current = [math.nan]
    wall_end = time.monotonic() + 900.0
    last_fire = [time.monotonic()]

    def state() -> str:
        return str((sup_state.get("batch") or {}).get("state", ""))

    def over() -> bool:
        # max_sim_s bounds the in-process runner; here the batch's end does (unless an event
        # waits for exactly that state), or a held batch on which nothing has fired for 30 wall
        # seconds, or a wall limit
        if not th.is_alive() and not armed:
            waits = any(ev.when.batch_state == state() for _i, ev in pending)
            if (state() in _FINAL and not waits) or time.monotonic() - last_fire[0] > 30.0:
                return True
        return time.monotonic() > wall_end

    def steer(now: float, phase: str) -> None:
        due: list[float] = []
        speed = max_speed if max_speed > 0 else math.inf
        for i, ev in pending:
            w = ev.when
            if i in armed:
                due.append(armed[i] - now)
            elif w.phase is not None:
                ahead = (phase_order.index(w.phase) - phase_order.index(phase)
                         if w.phase in phase_order and phase in phase_order else None)
                if ahead == 0:
                    speed = min(speed, sc.focus_speed)
                elif ahead == 1:
                    speed = min(speed, sc.approach_speed)
            elif w.signal is not None:
                speed = min(speed, sc.focus_speed)
            elif w.at_s is not None and w.batch_state is None:
                due.append(t0 + w.at_s - now if t0 is not None else 0.0)
        if end_t is not None:
            due.append(end_t - now)
        if due:  # cover what is left in about one wall second: overshoot <= one 10 Hz update
            speed = min(speed, max(sc.focus_speed, min(due)))
        if math.isinf(speed):
            speed = 0.0  # sim_world: 0 = as fast as possible
        cur = current[0]
        if math.isnan(cur) or (speed == 0.0) != (cur == 0.0) or (speed and abs(speed - cur) > 0.25 * cur):
            try:
                client.set_sim_speed(speed)
                current[0] = speed
                speeds.append({"t": round(now, 1), "speed": speed or "max"})
            except (TimeoutError, ValueError) as exc:
                say(f"  could not set the sim speed: {exc}")

    def settle() -> None:
        n = sup_state.get("_n", 0)
        deadline = time.monotonic() + 5.0
        while sup_state.get("_n", 0) < n + 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    while pending and not over():
        time.sleep(0.01)
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
                del armed[i]
                # sim time stands still while the event is applied and its effect reaches the
                # supervisor (as in-process, where an event happens between two ticks): a
                # phase that lasts less than that round trip in wall time is not passed meanwhile
                _pause(client, True)
                try:
                    res = _fire(client, ev, DeviceCommand, BatchCommand)
                    fired.append({"t": now, "event": ev.label(), **res})
                    say(f"  t={now:.0f} {ev.label()}: {'accepted' if res['accepted'] else 'REFUSED ' + res['code']}")
                    settle()
                finally:
                    _pause(client, False)
                last_fire[0] = time.monotonic()
                if not pending:  # observe from here on, at focus speed
                    end_t = now + sc.observe_s
                break  # re-read the state before judging the next event
        steer(float(sup_state["t"]), str((sup_state.get("batch") or {}).get("phase", "")))
    # like the in-process runner: the batch state is judged observe_s sim seconds after the last
    # event (at max speed the batch would otherwise have run on to its end)
    if end_t is None:
        end_t = (float(fired[-1]["t"]) if fired else float(sup_state.get("t", 0.0))) + sc.observe_s
    while float(sup_state.get("t", 0.0)) < end_t and not over():
        time.sleep(0.01)
        steer(float(sup_state.get("t", 0.0)), "")
    sup_state["_unfired"] = [ev.label() for _i, ev in pending]
    end_t = None
    pending.clear()
    armed.clear()
    steer(float(sup_state.get("t", 0.0)), "")  # the rest of the batch at full speed
    # Over the graph every supervisor step waits for device states to arrive, which costs sim
    # time the in-process runner does not spend; a scenario that expects the batch to stop
    # (Held, Aborted...) is judged when it leaves Running, not at a sim instant tuned in-process.
    # (Held is absorbing: nothing resumes without an operator.)
    expected = sc.expect.batch_state
    if expected and expected != "Running":
        settle_end = time.monotonic() + 120.0
        while state() in ("Running", "") and th.is_alive() and time.monotonic() < settle_end:
            time.sleep(0.02)
        time.sleep(0.2)  # the supervisor's next update
    sup_state["_observed_state"] = state()
    sup_state["_observed_t"] = float(sup_state.get("t", 0.0))


def _pause(client: CellClient, paused: bool) -> None:
    try:
        client.pause_sim(paused)
    except (TimeoutError, ValueError) as exc:
        raise DemoFailed(f"could not {'pause' if paused else 'resume'} sim time: {exc}") from None


def _fire(client: CellClient, ev: Any, DeviceCommand: Any, BatchCommand: Any) -> dict[str, Any]:  # noqa: N803
    try:
        if ev.operate is not None:
            o = ev.operate
            r = client.call(DeviceCommand, "/cell/operate", DeviceCommand.Request(
                device_id=o.node, command=o.command, args_json=json.dumps(o.args), user=o.user, reason=o.reason),
                15.0)
        elif ev.device is not None:
            d = ev.device
            r = client.command(d.node, d.command, d.args, user=d.user, reason=d.reason)
        elif ev.fault is not None:
            f = ev.fault
            r = client._wait_future(client._client(DeviceCommand, "/sim/fault").call_async(
                DeviceCommand.Request(device_id=f.device, command="clear" if f.clear else "inject",
                                      args_json=json.dumps({"fault": f.fault, **f.params}))), 15.0)
        else:
            b = ev.batch
            r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(
                command=b.command, user=b.user, password=b.password, meaning=b.meaning, reason=b.reason), 30.0)
    except TimeoutError as exc:
        return {"accepted": False, "code": "TIMEOUT", "reason": str(exc)}
    return {"accepted": r.accepted, "code": r.code, "reason": r.reason}


def _batch_summary(client: CellClient) -> dict[str, Any]:
    from std_srvs.srv import Trigger

    r = client._wait_future(client._client(Trigger, "/cell/batch/summary").call_async(Trigger.Request()), 15.0)
    return json.loads(r.message) if r.success else {}


def _no_deaths(procs: Any) -> None:
    dead = procs.poll()
    if dead:
        raise DemoFailed(f"process(es) exited during bring-up: {dead}")


def _sim_time(client: CellClient) -> float:
    s = client.state("isolator")
    if s is None:
        return math.nan
    return s.stamp.sec + s.stamp.nanosec * 1e-9


def run_patients_demo(config_dir: str, patients: int, *, json_out: bool = False, record_dir: str | None = None,
                      tick_s: float = 60.0, step_s: float = 5.0, max_sim_h: float = 96.0) -> int:
    """``cellctl demo --patients N``: N patient batches of PATIENT-CART-SHORT at once on the
    supervisor and the simulated cell **in-process** (:class:`~.supervisor.runner.InProcessRun`,
    sim time at full speed; not yet over the ROS graph: RunBatch carries no COI/DIN). Prints one
    JSON object with ``batches`` (per batch ``coi``, ``result`` PASS/FAIL, ``record`` file, whether
    it verifies, whether its custody is complete and every entry carries the COI). Exit 0 only if
    every batch passed."""
    from .coi import CustodyLog, check_custody, make_din
    from .config import load_config
    from .records import BatchRecord, verify_file
    from .supervisor.runner import InProcessRun

    class _Clock:
        def __init__(self) -> None:
            self.t = time.time()

        def now(self) -> float:
            self.t = max(self.t + 1e-6, time.time())
            return self.t

    if not 1 <= patients <= 64:
        print(json.dumps({"result": "INVALID", "error": f"--patients must be 1..64, got {patients}"}))
        return 2
    cfg = load_config(config_dir)
    rdir = Path(record_dir or os.path.join(os.getcwd(), "records")) / time.strftime("patients-%Y%m%d-%H%M%S")
    rdir.mkdir(parents=True, exist_ok=True)
    run = InProcessRun(cfg, tick_s=tick_s, step_s=step_s, record=BatchRecord(rdir / "cell-record.db", _Clock()))
    sup = run.sup
    say = (lambda *a: None) if json_out else (lambda m: print(m, flush=True))
    started: dict[str, Any] = {}
    wall0 = time.monotonic()
    pending = [(f"P{i + 1:02d}", f"COI-DEMO{i + 1:04d}", make_din("A9999", time.strftime("%y"), f"{i + 1:06d}"))
               for i in range(patients)]
    retry_s = 1800.0  # a batch admission control refuses (the cell is full) is offered again later
    next_try = [0.0]

    def admit(r: Any) -> None:
        if not pending or r.now() < next_try[0]:
            return
        next_try[0] = r.now() + retry_s
        while pending:
            bid, coi, din = pending[0]
            out = sup.run_batch("PATIENT-CART-SHORT", bid, "op1", coi=coi, din=din.barcode_data)
            started[bid] = out
            say(f"t={r.now():.0f} s {bid} {coi}: {out.code} {out.reason}")
            if out.code == "ADMISSION":
                return  # FIFO: the next waits behind it
            pending.pop(0)

    run.hooks.append(admit)
    admit(run)
    run.run_until(lambda: not pending and all(ex.sm.state.final or ex.sm.state.value == "Held"
                                              for ex in sup.patients.values()), max_sim_h * 3600)
    batches = []
    for bid, out in started.items():
        ex = sup.patients.get(bid)
        if ex is None:
            batches.append({"batch_id": bid, "coi": "", "result": "FAIL", "record": "", "error": out.reason})
            continue
        path = str(ex.record.path)
        entries = ex.record.entries()
        custody = check_custody(CustodyLog(ex.record._record, "CELL-01"), bid)
        ok = ex.sm.state.value == "Complete"
        verified = verify_file(path).ok
        batches.append({"batch_id": bid, "coi": ex.coi, "din": ex.din, "slot": ex.slot,
                        "result": "PASS" if ok and verified and not custody else "FAIL",
                        "state": ex.sm.state.value, "held_reason": ex.held_reason, "record": path,
                        "record_verified": verified, "entries": len(entries),
                        "entries_with_coi": sum(1 for e in entries if e.payload.get("coi") == ex.coi),
                        "custody_problems": custody,
                        "coi_deviations": sum(1 for e in ex.record.entries(kinds=["deviation"])
                                              if "coi_expected" in e.payload)})
    cell = sup.patient_cell
    summary: dict[str, Any] = {"result": "PASS" if batches and all(b["result"] == "PASS" for b in batches) else "FAIL",
               "mode": "in-process", "patients": patients, "batches": batches,
               "segregation_violations": list(cell.violations) if cell is not None else [],
               "sim_s": run.now(), "wall_s": round(time.monotonic() - wall0, 1), "record_dir": str(rdir)}
    if json_out:
        print(json.dumps(summary, default=str))
    else:
        for b in batches:
            say(f"{b['batch_id']} {b['coi']}: {b['result']} ({b.get('state')}) record {b['record']}")
        say(f"{summary['result']}: {patients} batches in {summary['sim_s'] / 3600:.1f} h sim, "
            f"{summary['wall_s']} s wall")
    return 0 if summary["result"] == "PASS" else 1


class _ReadOnlyRecord:
    """A batch record file opened read-only (SQLite ``mode=ro``), for the checks after a graph run
    (:func:`~aseptic_cell.coi.check_custody` reads entries only; nothing is written)."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self.path = path
        self._c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def entries(self, batch_id: str | None = None, kinds: Any = None) -> list[Any]:
        from .records.store import _COLUMNS, _row_to_entry

        rows = self._c.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY seq").fetchall()
        out = [_row_to_entry(r) for r in rows]
        kinds = None if kinds is None else set(kinds)
        return [e for e in out if (batch_id is None or e.batch_id == batch_id) and (kinds is None or e.kind in kinds)]

    def append(self, *_a: Any, **_kw: Any) -> Any:
        raise PermissionError(f"{self.path} is opened read-only")

    def close(self) -> None:
        self._c.close()


def patient_record_checks(path: str, batch_id: str, coi: str) -> dict[str, Any]:
    """A patient batch's record after the run: verified (hash chain, signed checkpoints, signatures),
    its entries, how many carry the batch's COI, the custody problems (COI-01), the COI deviations."""
    from .coi import CustodyLog, check_custody
    from .records import verify_file

    out: dict[str, Any] = {"record_verified": False, "entries": 0, "entries_with_coi": 0,
                           "custody_problems": {}, "coi_deviations": 0}
    if not path or not Path(path).is_file():
        out["error"] = f"no record file {path!r}"
        return out
    rep = verify_file(path)
    out["record_verified"] = bool(rep.ok)
    if not rep.ok:
        out["verify"] = str(rep)[:500]
    rec = _ReadOnlyRecord(path)
    try:
        entries = rec.entries()
        out["entries"] = len(entries)
        out["entries_with_coi"] = sum(1 for e in entries if e.payload.get("coi") == coi)
        out["custody_problems"] = check_custody(CustodyLog(rec, "CELL-01"), batch_id)  # type: ignore[arg-type]
        out["coi_deviations"] = sum(1 for e in entries if e.kind == "deviation" and "coi_expected" in e.payload)
    finally:
        rec.close()
    return out


def run_patients_graph_demo(config_dir: str, patients: int, *, speed: float = math.inf, json_out: bool = False,
                            record_dir: str | None = None, log_dir: str | None = None,
                            domain_id: int | None = None, max_wall_s: float = 3600.0) -> int:
    """``cellctl demo --patients N`` over the real node graph (issue 14): sim_world, the four cell
    devices, the process-equipment process, the lifecycle manager and the supervisor as OS
    processes; N patient batches of PATIENT-CART-SHORT started at once through the supervisor's
    RunBatch action with their COI and DIN (one goal each; a goal that admission control refuses,
    the cell being full, is sent again 1800 sim s later, FIFO). Prints one JSON object with
    ``batches`` (per batch ``coi``, ``result`` PASS/FAIL, ``record``, whether it verifies, its
    entries and how many carry the COI, custody problems) and the sim and wall times. Exit 0 only if
    every batch passed (Complete, record complete and verified, every entry with its COI, custody
    complete) and every process exited cleanly."""
    from .coi import make_din
    from .launcher import CellProcesses, wait_for_nodes
    from .nodes.graph import PROCESS_EQUIPMENT_KINDS, default_graph
    from .nodes.supervisor_node import supervisor_spec

    if not 1 <= patients <= 64:
        print(json.dumps({"result": "INVALID", "error": f"--patients must be 1..64, got {patients}"}))
        return 2
    say = (lambda *a: None) if json_out else (lambda m: print(m, flush=True))
    rdir = (Path(record_dir or os.path.join(os.getcwd(), "records")) /
            time.strftime("patients-graph-%Y%m%d-%H%M%S")).resolve()
    rdir.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or tempfile.mkdtemp(prefix="aseptic_cell-patients-")
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    specs = default_graph(config_dir, speed=speed, extra=[supervisor_spec(config_dir, str(rdir))],
                          process_equipment=True)
    summary: dict[str, Any] = {"result": "FAIL", "mode": "graph", "patients": patients, "batches": [],
                               "speed": "max" if math.isinf(speed) else speed, "record_dir": str(rdir),
                               "logs": log_dir}
    stamp = time.strftime("%y")
    todo = [(f"P{i + 1:02d}", f"COI-DEMO{i + 1:04d}", make_din("A9999", stamp, f"{i + 1:06d}").barcode_data)
            for i in range(patients)]
    cois = {bid: (coi, din) for bid, coi, din in todo}
    results: dict[str, dict[str, Any]] = {}
    seg_seen: set[str] = set()
    wall0 = time.monotonic()
    with CellProcesses(specs, env=env, log_dir=log_dir) as procs:
        client = CellClient(domain_id=domain_id)
        try:
            say(f"starting the node graph ({len(specs)} processes; logs in {log_dir})")
            wait_for_nodes([*[s.name for s in specs if s.argv is None], *PROCESS_EQUIPMENT_KINDS], timeout_s=180.0,
                           lifecycle=[*[s.name for s in specs if s.lifecycle], *PROCESS_EQUIPMENT_KINDS],
                           check=lambda: _no_deaths(procs), domain_id=domain_id)
            for n in ("isolator", "vhp", "autoclave", "arm"):
                client.wait_state(n, lambda s: s.comm_ok, 60.0, f"{n} state")
            # the supervisor's own segregation monitor (SEG-01, the arbiter's allocation invariants), as
            # its /cell/batches view lists them: every one seen during the run is reported
            from std_msgs.msg import String

            def on_view(m: Any) -> None:
                seg_seen.update(json.loads(m.data).get("violations") or ())

            client.node.create_subscription(String, "/cell/batches", on_view, 10)
            summary["bringup_s"] = round(time.monotonic() - wall0, 2)
            say(f"graph up after {summary['bringup_s']} s; {patients} patient batches via /cell/batch/run")
            sim0, run0 = _sim_time(client), time.monotonic()
            goals: dict[str, Any] = {}
            next_try = -math.inf
            retry_s = 1800.0  # as in-process: a batch admission control refuses is offered again later
            # until every batch has its result (a goal that ends between two looks is still read)
            while len(results) < patients and time.monotonic() - run0 < max_wall_s:
                _no_deaths(procs)
                now = _sim_time(client)
                for bid, g in list(goals.items()):  # refused by admission (the cell is full): try again later
                    if g.done() and bid not in results:
                        r = g.result(30.0)
                        if r is not None and r.reason.startswith("ADMISSION"):
                            say(f"t={now - sim0:.0f} s {bid}: {r.reason}")
                            del goals[bid]
                            todo = sorted([(bid, *cois[bid]), *todo])  # FIFO: by batch id
                            next_try = now + retry_s
                        else:
                            results[bid] = {"success": bool(r and r.success), "state": r.state if r else "",
                                            "reason": r.reason if r else "goal rejected",
                                            "record": r.record_path if r else "",
                                            "summary": json.loads(r.json_summary or "{}") if r else {}}
                            say(f"t={now - sim0:.0f} s {bid}: {results[bid]['state']} {results[bid]['reason']}")
                if todo and (now >= next_try or not goals):
                    bid, coi, din = todo.pop(0)
                    goals[bid] = client.start_batch("PATIENT-CART-SHORT", bid, user="op1", coi=coi, din=din)
                    say(f"t={now - sim0:.0f} s {bid} {coi}: RunBatch sent")
                    if not goals[bid].accepted:
                        results[bid] = {"success": False, "state": "", "reason": "goal rejected", "record": "",
                                        "summary": {}}
                    continue  # the next one after this one's admission is known
                time.sleep(0.2)
            sim1 = _sim_time(client)
            summary["sim_s"] = round(sim1 - sim0, 1) if math.isfinite(sim0) and math.isfinite(sim1) else None
            summary["wall_s"] = round(time.monotonic() - run0, 1)
            if todo or len(results) < patients:
                summary["error"] = f"not finished within {max_wall_s:g} wall s: {sorted(set(cois) - set(results))}"
        except (DemoFailed, TimeoutError, RuntimeError) as exc:
            summary["error"] = str(exc)
            say(f"FAILED: {exc}")
        finally:
            client.close()
        summary["exit_codes"] = procs.stop()
    # the records are checked once the supervisor has closed them
    batches = []
    for bid, (coi, din) in sorted(cois.items()):
        r = results.get(bid, {"success": False, "state": "", "reason": "no result", "record": "", "summary": {}})
        checks = patient_record_checks(r["record"], bid, coi)
        ok = (r["success"] and checks["record_verified"] and checks["entries"] > 0
              and checks["entries_with_coi"] == checks["entries"] and not checks["custody_problems"])
        batches.append({"batch_id": bid, "coi": coi, "din": din, "slot": r["summary"].get("slot"),
                        "result": "PASS" if ok else "FAIL", "state": r["state"], "held_reason": r["reason"],
                        "record": r["record"], **checks})
    summary["batches"] = batches
    summary["segregation_violations"] = sorted(seg_seen)
    if seg_seen:
        summary.setdefault("error", f"segregation violations: {sorted(seg_seen)[:5]}")
    clean = all(c == 0 for c in (summary.get("exit_codes") or {}).values())
    if not clean:
        summary.setdefault("error", f"unclean process exit: {summary.get('exit_codes')}")
    summary["result"] = ("PASS" if batches and len(batches) == patients and all(b["result"] == "PASS" for b in batches)
                         and clean and "error" not in summary else "FAIL")
    code = 0 if summary["result"] == "PASS" else 1
    if json_out:
        print(json.dumps(summary, default=str))
    else:
        for b in batches:
            say(f"{b['batch_id']} {b['coi']}: {b['result']} ({b.get('state')}) record {b['record']}")
        say(f"{summary['result']}: {patients} batches over the graph in {(summary.get('sim_s') or 0) / 3600:.1f} h "
            f"sim, {summary.get('wall_s')} s wall")
    return code
