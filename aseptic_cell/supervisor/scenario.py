"""Scenarios: YAML files of operator actions and device faults at sim times or on events,
run against the batch (``cellctl demo --scenario FILE``; in-process in the tests).

Schema (:class:`Scenario`, validated strictly: unknown keys, wrong types, an event without a
trigger, an unknown device node are errors naming the field)::

    id: IL-08-hatch-during-vhp
    interlock: IL-08                  # the interlock it demonstrates
    description: "During VHP dwell, the operator opens hatch door B"
    recipe: CART-TRANSDUCTION         # or recipe_file: recipes/x.yaml (relative to the scenario)
    events:
      - when: {phase: PH-VHP, signal: vhp.phase, equals: DECONTAMINATE, delay_s: 60}
        operate: {node: isolator, command: open_door, args: {door: B}, user: op1}
      - when: {at_s: 2000}
        device: {node: isolator, command: open_door, args: {door: B}}     # bypasses the supervisor
      - when: {signal: autoclave.phase, equals: PLATEAU}   # (any signal name)
        fault: {device: AC1, fault: steam_failure}
      - batch: {command: hold, user: op1}
    observe_s: 600                    # keep running after the last event (no auto-resume)
    max_sim_s: 20000                  # in-process bound (graph runs end with the batch)
    focus_speed: 50                   # graph runs: sim speed-up while an event is near or observed
    approach_speed: 400               # graph runs: ... while the phase before an event's phase runs
    expect:
      batch_state: Held
      refused: [{command: open_door, rule: IL-08}]
      trips: [IL-08]                  # rule ids or text that must appear in a trip
      devices_latched: true
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import CellConfig

NodeName = Literal["isolator", "vhp", "autoclave", "arm"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_M):
    at_s: float | None = Field(default=None, ge=0, description="sim seconds after the batch started")
    phase: str | None = Field(default=None, description="id of the active phase (e.g. PH-VHP)")
    signal: str | None = Field(default=None, description="interlock signal name (KNOWN_SIGNALS) or vhp.phase")
    equals: bool | float | int | str | None = None
    at_least: float | None = Field(default=None, description="fires when the signal is >= this number")
    batch_state: str | None = Field(default=None, description="ISA-88 batch state, e.g. Held")
    delay_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _some(self) -> When:
        if self.signal is not None and (self.equals is None) == (self.at_least is None):
            raise ValueError("'signal' needs exactly one of 'equals' or 'at_least'")
        return self


class Operate(_M):
    node: NodeName
    command: str
    args: dict[str, Any] = {}
    user: str = "op1"
    reason: str = "scenario"
    password: str = ""
    meaning: str = ""


class DeviceCmd(_M):
    node: NodeName
    command: str
    args: dict[str, Any] = {}
    user: str = "op1"
    reason: str = "scenario: direct device command"


class Fault(_M):
    device: str
    fault: str
    params: dict[str, Any] = {}
    clear: bool = False


class BatchCmd(_M):
    command: Literal["start", "hold", "restart", "pause", "resume", "stop", "abort", "reset", "confirm",
                     "close_record"]
    user: str = "op1"
    password: str = ""
    meaning: str = ""
    reason: str = "scenario"


class BypassCmd(_M):
    """Bypass management (supervisor/bypass.py): request a bypass of ``rule``, approve or remove
    one (``bypass``: its id, or ``last`` = the last one requested in this run)."""

    action: Literal["request", "approve", "remove"]
    rule: str = ""
    duration_s: float = 0.0
    bypass: str = "last"
    user: str = "sup1"
    password: str = ""
    meaning: str = ""
    reason: str = "scenario"


class DeviationCmd(_M):
    """A deviation (supervisor/deviations.py): raise one against ``rule``, or approve one
    (``deviation``: its id, or ``last``)."""

    action: Literal["raise", "approve"]
    rule: str = ""
    deviation: str = "last"
    user: str = "sup1"
    password: str = ""
    meaning: str = ""
    reason: str = "scenario"


class Event(_M):
    name: str = ""
    when: When = When()
    operate: Operate | None = None
    device: DeviceCmd | None = None
    fault: Fault | None = None
    batch: BatchCmd | None = None
    bypass: BypassCmd | None = None
    deviation: DeviationCmd | None = None

    @model_validator(mode="after")
    def _one(self) -> Event:
        n = sum(x is not None for x in (self.operate, self.device, self.fault, self.batch, self.bypass,
                                        self.deviation))
        if n != 1:
            raise ValueError(f"an event needs exactly one of operate/device/fault/batch/bypass/deviation (got {n})")
        return self

    def label(self) -> str:
        if self.name:
            return self.name
        if self.operate:
            return f"operate {self.operate.node}.{self.operate.command} {self.operate.args} by {self.operate.user}"
        if self.device:
            return f"device {self.device.node}.{self.device.command} {self.device.args}"
        if self.fault:
            return f"{'clear' if self.fault.clear else 'inject'} fault {self.fault.fault} on {self.fault.device}"
        if self.bypass:
            return f"bypass {self.bypass.action} {self.bypass.rule or self.bypass.bypass} by {self.bypass.user}"
        if self.deviation:
            return f"deviation {self.deviation.action} {self.deviation.rule or self.deviation.deviation} by " \
                   f"{self.deviation.user}"
        assert self.batch is not None
        return f"batch {self.batch.command} by {self.batch.user}"


class Refused(_M):
    command: str
    source: Literal["operate", "device", "supervisor", "batch"] | None = None
    code: str | None = None
    rule: str | None = Field(default=None, description="text (e.g. a rule id) that the reason must contain")


class Expect(_M):
    batch_state: str | None = None
    refused: list[Refused] = []
    trips: list[str] = []
    devices_latched: bool | None = None
    vhp_result: str | None = None
    autoclave_result: str | None = None
    bypass_uses_min: int | None = Field(default=None, description="actions allowed only under a bypass, at least")
    alarms: list[str] = Field(default=[], description="alarm ids that must have been raised")


class Scenario(_M):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    interlock: str = ""
    description: str = ""
    recipe: str | None = None
    recipe_file: str | None = None
    batch_id: str = "B-SCENARIO"
    user: str = "op1"
    start_batch: bool = True
    events: list[Event] = []
    observe_s: float = Field(default=300.0, ge=0)
    max_sim_s: float = Field(default=30000.0, gt=0)
    focus_speed: float = Field(default=50.0, gt=0, le=10000)
    approach_speed: float = Field(default=400.0, gt=0, le=100000)
    expect: Expect = Expect()

    @model_validator(mode="after")
    def _recipe(self) -> Scenario:
        if self.recipe and self.recipe_file:
            raise ValueError("give 'recipe' or 'recipe_file', not both")
        return self


class ScenarioError(ValueError):
    """The scenario file is unreadable or invalid; ``problems`` name file, field and reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_scenario(path: str | Path) -> tuple[Scenario, Path]:
    """Load and validate a scenario file.

    Raises:
        ScenarioError: unreadable YAML or a schema error (``file: field.path: reason``).
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError([f"{p}: cannot read scenario: {exc}"]) from None
    if not isinstance(data, dict):
        raise ScenarioError([f"{p}: a scenario must be a mapping, got {type(data).__name__}"])
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError([f"{p}: {'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}"
                             for e in exc.errors()]) from None
    return sc, p


def recipe_ref(sc: Scenario, path: Path, cfg: CellConfig) -> str:
    if sc.recipe_file:
        return str((path.parent / sc.recipe_file).resolve())
    return sc.recipe or next(iter(sorted(cfg.recipes)))


# ----------------------------------------------------------------------------- checks
def evaluate(sc: Scenario, summary: dict[str, Any], latched: dict[str, bool]) -> list[str]:
    """Expectation failures for a finished run (empty = the scenario behaved)."""
    e = sc.expect
    out = []
    if e.batch_state and summary.get("batch_state") != e.batch_state:
        out.append(f"batch state {summary.get('batch_state')!r}, expected {e.batch_state!r}")
    for r in e.refused:
        hit = [x for x in summary.get("refusals", []) if x.get("command") == r.command
               and (r.source is None or x.get("source") == r.source)
               and (r.code is None or x.get("code") == r.code)
               and (r.rule is None or r.rule in str(x.get("reason")))]
        if not hit:
            out.append(f"no refusal of {r.command} (code {r.code}, rule {r.rule})")
    for t in e.trips:
        if not any(t == x.get("rule") or t in str(x.get("reason")) for x in summary.get("trips", [])):
            out.append(f"no trip matching {t!r}")
    if e.devices_latched is not None and all(latched.values()) != e.devices_latched:
        out.append(f"devices latched {latched}, expected all={e.devices_latched}")
    if e.vhp_result and (summary.get("vhp") or {}).get("result") != e.vhp_result:
        out.append(f"VHP result {(summary.get('vhp') or {}).get('result')}, expected {e.vhp_result}")
    if e.autoclave_result and (summary.get("autoclave") or {}).get("result") != e.autoclave_result:
        out.append(f"autoclave result {(summary.get('autoclave') or {}).get('result')}, expected {e.autoclave_result}")
    if e.bypass_uses_min is not None:
        uses = sum(int(b.get("uses", 0)) for b in summary.get("bypasses", []))
        if uses < e.bypass_uses_min:
            out.append(f"{uses} actions under a bypass, expected at least {e.bypass_uses_min}")
    raised = {a.get("alarm") for a in summary.get("alarms", [])}
    for a in e.alarms:
        if a not in raised:
            out.append(f"alarm {a} never raised")
    if summary.get("violations"):
        out.append(f"invariant violations: {summary['violations'][:3]}")
    return out


def _fires(w: When, now: float, t0: float, phase: str, signal: Any, batch_state: str) -> bool:
    if w.at_s is not None and now - t0 < w.at_s:
        return False
    if w.phase is not None and phase != w.phase:
        return False
    if w.batch_state is not None and batch_state != w.batch_state:
        return False
    if w.signal is not None:
        v = signal(w.signal)
        if w.at_least is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < w.at_least:
                return False
        elif v != w.equals:
            return False
    return True


# ----------------------------------------------------------------------------- in-process run
def run_in_process(sc: Scenario, path: Path, cfg: CellConfig, *, record: Any = None, tick_s: float = 5.0,
                   users: Any = None) -> dict[str, Any]:
    """Run a scenario on the in-process cell; returns the summary (with ``ok``/``failures``)."""
    from .invariants import InvariantMonitor
    from .runner import InProcessRun

    wall0 = time.monotonic()
    run = InProcessRun(cfg, tick_s=tick_s, record=record, users=users)
    sup, cell = run.sup, run.cell
    mon = InvariantMonitor(cell, sup)
    fired: list[dict[str, Any]] = []
    t0 = run.now()
    start_out = None
    if sc.start_batch:
        start_out = sup.run_batch(recipe_ref(sc, path, cfg), sc.batch_id, sc.user)
    pending = list(enumerate(sc.events))
    armed: dict[int, float] = {}
    last_event_t = t0
    while run.now() - t0 < sc.max_sim_s:
        phase = (sup.active_phase or "").rsplit("/", 1)[-1]
        for i, ev in list(pending):
            if i not in armed and _fires(ev.when, run.now(), t0, phase, sup.signal, sup.sm.state.value):
                armed[i] = run.now() + ev.when.delay_s
            if i in armed and run.now() >= armed[i]:
                pending.remove((i, ev))
                fired.append({"t": run.now(), "event": ev.label(), **_apply(ev, run)})
                last_event_t = run.now()
        if not pending and run.now() - last_event_t >= sc.observe_s:
            want = sc.expect.batch_state
            if want is None or sup.sm.state.value == want or sup.sm.state.final:
                break
        run.tick_once()
        mon.check()
    summary = sup.summary()
    summary.update(scenario=sc.id, interlock=sc.interlock, events=fired, not_fired=[e.label() for _, e in pending],
                   violations=mon.violations, sim_time_s=round(run.now() - t0, 1),
                   wall_time_s=round(time.monotonic() - wall0, 2),
                   start=None if start_out is None else {"accepted": start_out.accepted, "code": start_out.code,
                                                         "reason": start_out.reason})
    summary["bypasses"] = [b.view() for b in sup.operator.bypasses.items.values()]
    summary["deviations"] = [dict(d.__dict__) for d in sup.operator.deviations.items.values()]
    # the devices a trip makes safe (trips.SAFE_ORDER); the process equipment runs on through a
    # cell-wide trip (INT-01: incubation continues), so it is not expected latched
    from .trips import SAFE_ORDER

    latched = {n: bool(cell.latched(n)) for n in cell.node_devices if n in SAFE_ORDER}
    summary["latched"] = latched
    failures = evaluate(sc, summary, latched)
    if pending:
        failures.append(f"events never fired: {[e.label() for _, e in pending]}")
    summary["failures"] = failures
    summary["ok"] = not failures
    return summary


def _apply(ev: Event, run: Any) -> dict[str, Any]:
    sup, cell = run.sup, run.cell
    if ev.operate is not None:
        o = ev.operate
        out, h = sup.operate(o.node, o.command, dict(o.args), o.user, o.reason, password=o.password, meaning=o.meaning)
        if h is not None:
            return {"accepted": h.accepted, "code": h.code, "reason": h.reason}
        return {"accepted": False, "code": out.code, "reason": out.reason}
    if ev.device is not None:
        d = ev.device
        ok, code, why, _ = cell.execute(d.node, d.command, dict(d.args), user=d.user, reason=d.reason)
        return {"accepted": ok, "code": code, "reason": why}
    if ev.fault is not None:
        f = ev.fault
        try:
            if f.clear:
                cell.clear_fault(f.device, f.fault)
            else:
                cell.inject_fault(f.device, f.fault, **f.params)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return {"accepted": False, "code": "INVALID", "reason": str(exc)}
        return {"accepted": True, "code": "OK", "reason": ""}
    if ev.bypass is not None:
        bc, byp = ev.bypass, sup.operator.bypasses
        bid = bc.bypass if bc.bypass != "last" else (list(byp.items)[-1] if byp.items else "")
        if bc.action == "request":
            out = byp.request(bc.rule, bc.reason, bc.duration_s, bc.user, password=bc.password, meaning=bc.meaning)
        elif bc.action == "approve":
            out = byp.approve(bid, bc.user, password=bc.password, meaning=bc.meaning, reason=bc.reason)
        else:
            out = byp.remove(bid, bc.user, bc.reason)
        return {"accepted": out.accepted, "code": out.code, "reason": out.reason}
    if ev.deviation is not None:
        dc, devs = ev.deviation, sup.operator.deviations
        did = dc.deviation if dc.deviation != "last" else (list(devs.items)[-1] if devs.items else "")
        if dc.action == "raise":
            out = devs.raise_(dc.rule, dc.reason, dc.user)
        else:
            out = devs.approve(did, dc.user, dc.password, dc.meaning, dc.reason)
        return {"accepted": out.accepted, "code": out.code, "reason": out.reason}
    b = ev.batch
    assert b is not None
    out = sup.batch_command(b.command, b.user, b.password, b.meaning, b.reason)
    return {"accepted": out.accepted, "code": out.code, "reason": out.reason}


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, default=str)
