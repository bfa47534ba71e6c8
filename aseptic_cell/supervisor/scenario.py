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
    batch: str | None = Field(default=None, description="patient batch id: phase/batch_state are that batch's")
    open_zone: Literal["open", "purge"] | None = Field(
        default=None, description="open: a patient batch (``batch`` if given) has an open phase in progress; "
        "purge: the open zone is in its purge wait (SEG-05)")
    exists: str | None = Field(default=None, description="a container id registered in the chain of identity")
    after: str | None = Field(default=None, description="name of an event that must have fired before")
    module_dirty: str | None = Field(default=None, description="an equipment module is DIRTY (SEG-10)")
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
    target: str = Field(default="", description="patient batch id ('' = the campaign batch)")


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
    target: str = Field(default="", description="patient batch id the deviation is raised against")
    deviation: str = "last"
    user: str = "sup1"
    password: str = ""
    meaning: str = ""
    reason: str = "scenario"


class PatientStart(_M):
    """A patient batch (RunBatch of a patient recipe with its COI and apheresis DIN)."""

    batch_id: str
    coi: str
    din: str
    recipe: str = "PATIENT-CART-SHORT"
    user: str = "op1"
    start_at_s: float | None = Field(default=0.0, ge=0, description="None: started by a start_patient event")


class Present(_M):
    """The station reader reads another label where the step expects ``container`` (a mix-up):
    ``coi``/``label_container``/``din`` are what the label read there says."""

    container: str
    location: str
    coi: str
    label_container: str
    din: str = ""


class NoRead(_M):
    container: str
    reads: int = Field(ge=1)


class Trip(_M):
    """A cell-wide interlock trip (Supervisor.hold_on_trip: INT-01, SEG-06 excursion window)."""

    source: str
    reason: str = "scenario trip"


class SegregationCmd(_M):
    """supervisor/segregation.py: spill, cleanup, line_clearance, exit_contain, clean (a module)."""

    action: Literal["spill", "cleanup", "line_clearance", "exit_contain", "clean"]
    batch: str = ""
    material: str = "patient"
    confined: bool = True
    method: str = ""
    vhp_cycle: str = ""
    module: str = ""
    user: str = "op1"
    password: str = ""
    meaning: str = ""
    reason: str = "scenario"


class ArbiterCmd(_M):
    """Ask the arbiter directly: ``open``: an open-zone request of ``batch`` (granted or not, and why;
    withdrawn after); ``closed``: a closed-processing request (SEP) of ``batch``; ``vhp``: a VHP
    request (withdrawn after); ``misplace``: move ``batch``'s product into the incubator slot of
    ``into_slot_of`` through the chain of identity."""

    action: Literal["open", "closed", "vhp", "misplace"]
    batch: str = ""
    into_slot_of: str = ""


class Event(_M):
    name: str = ""
    when: When = When()
    operate: Operate | None = None
    device: DeviceCmd | None = None
    fault: Fault | None = None
    batch: BatchCmd | None = None
    bypass: BypassCmd | None = None
    deviation: DeviationCmd | None = None
    start_patient: str | None = Field(default=None, description="batch id of a ``patients`` entry")
    present: Present | None = None
    no_read: NoRead | None = None
    trip: Trip | None = None
    segregation: SegregationCmd | None = None
    arbiter: ArbiterCmd | None = None

    @model_validator(mode="after")
    def _one(self) -> Event:
        kinds = (self.operate, self.device, self.fault, self.batch, self.bypass, self.deviation, self.start_patient,
                 self.present, self.no_read, self.trip, self.segregation, self.arbiter)
        n = sum(x is not None for x in kinds)
        if n != 1:
            raise ValueError("an event needs exactly one of operate/device/fault/batch/bypass/deviation/"
                             f"start_patient/present/no_read/trip/segregation/arbiter (got {n})")
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
        if self.start_patient:
            return f"start patient batch {self.start_patient}"
        if self.present:
            return f"reader at {self.present.location} reads {self.present.label_container} ({self.present.coi})"
        if self.no_read:
            return f"label of {self.no_read.container} unreadable x{self.no_read.reads}"
        if self.trip:
            return f"cell-wide trip {self.trip.source}"
        if self.segregation:
            return f"segregation {self.segregation.action} {self.segregation.batch or self.segregation.module}"
        if self.arbiter:
            return f"arbiter {self.arbiter.action} {self.arbiter.batch}"
        if self.deviation:
            return f"deviation {self.deviation.action} {self.deviation.rule or self.deviation.deviation} by " \
                   f"{self.deviation.user}"
        assert self.batch is not None
        return f"batch {self.batch.command} by {self.batch.user}"


class Refused(_M):
    command: str
    source: Literal["operate", "device", "supervisor", "batch", "segregation", "scenario"] | None = None
    code: str | None = None
    rule: str | None = Field(default=None, description="text (e.g. a rule id) that the reason must contain")


class PatientExpect(_M):
    state: str | None = None
    impacted: bool | None = None
    deviations: list[str] = Field(default=[], description="rule ids with a deviation in the batch's own record")
    no_deviations: list[str] = Field(default=[], description="rule ids that must have NO deviation in its record")
    held_reason: str | None = Field(default=None, description="text the hold reason must contain")
    entries: list[str] = Field(default=[], description="record actions that must appear (e.g. equipment.use_start)")
    no_entries: list[str] = Field(default=[], description="record actions that must NOT appear (e.g. custody.weld)")


class Expect(_M):
    batch_state: str | None = None
    refused: list[Refused] = []
    trips: list[str] = []
    devices_latched: bool | None = None
    vhp_result: str | None = None
    autoclave_result: str | None = None
    bypass_uses_min: int | None = Field(default=None, description="actions allowed only under a bypass, at least")
    alarms: list[str] = Field(default=[], description="alarm ids that must have been raised")
    accepted: list[str] = Field(default=[], description="event names whose action must have been accepted")
    batches: dict[str, PatientExpect] = Field(default={}, description="patient batch id -> what must hold")
    contain: bool | None = Field(default=None, description="the cell is (still) in CONTAIN at the end (SEG-07)")
    records_intact: bool | None = Field(
        default=None, description="every patient record verifies (hash chain) and every entry carries its COI")


class Scenario(_M):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    interlock: str = ""
    description: str = ""
    recipe: str | None = None
    recipe_file: str | None = None
    batch_id: str = "B-SCENARIO"
    user: str = "op1"
    start_batch: bool = True
    covers: list[str] = Field(default=[], description="further catalogue rows this scenario demonstrates")
    patients: list[PatientStart] = Field(default=[], description="patient batches (each its own COI and record)")
    site: dict[str, Any] = Field(default={}, description="site values [M] changed for this run: t_purge_min, "
                                 "t_line_clearance_min, vhp_with_product_inside, product_contact, "
                                 "glove_test_before_first_open")
    tick_s: float = Field(default=5.0, gt=0, le=60)
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
        ids = {p.batch_id for p in self.patients}
        unknown = sorted(SITE_KEYS.symmetric_difference(self.site) & set(self.site))
        if unknown:
            raise ValueError(f"site: unknown keys {unknown}; known: {sorted(SITE_KEYS)}")
        names = {e.name for e in self.events if e.name}
        for e in self.events:
            if e.when.after is not None and e.when.after not in names:
                raise ValueError(f"when.after {e.when.after!r} names no event (names: {sorted(names)})")
            if e.start_patient is not None and e.start_patient not in ids:
                raise ValueError(f"start_patient {e.start_patient!r} is not in patients ({sorted(ids)})")
        missing = sorted(set(self.expect.batches) - ids)
        if missing:
            raise ValueError(f"expect.batches names batches not in patients: {missing}")
        return self


SITE_KEYS = frozenset({"t_purge_min", "t_line_clearance_min", "vhp_with_product_inside", "product_contact",
                       "glove_test_before_first_open"})


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
    by_name = {ev.get("name"): ev for ev in summary.get("events", [])}
    for name in e.accepted:
        ev = by_name.get(name)
        if ev is None or not ev.get("accepted"):
            out.append(f"event {name!r} was not accepted: {ev}")
    pat = summary.get("patients", {})
    for b, pe in e.batches.items():
        got = pat.get(b)
        if got is None:
            out.append(f"patient batch {b} never started")
            continue
        if pe.state is not None and got["state"] != pe.state:
            out.append(f"{b}: state {got['state']!r}, expected {pe.state!r} ({got['held_reason']})")
        if pe.impacted is not None and got["impacted"] != pe.impacted:
            out.append(f"{b}: impacted {got['impacted']}, expected {pe.impacted}")
        for rule in pe.deviations:
            if rule not in got["deviation_rules"]:
                out.append(f"{b}: no {rule} deviation in its record (has {got['deviation_rules']})")
        for rule in pe.no_deviations:
            if rule in got["deviation_rules"]:
                out.append(f"{b}: a {rule} deviation in its record, expected none")
        if pe.held_reason is not None and pe.held_reason not in got["held_reason"]:
            out.append(f"{b}: hold reason {got['held_reason']!r} lacks {pe.held_reason!r}")
        for a in pe.entries:
            if a not in got["actions"]:
                out.append(f"{b}: no {a!r} entry in its record")
        for a in pe.no_entries:
            if a in got["actions"]:
                out.append(f"{b}: a {a!r} entry in its record, expected none")
    if e.contain is not None and (summary.get("segregation", {}).get("contain") is not None) != e.contain:
        out.append(f"CONTAIN {summary.get('segregation', {}).get('contain')}, expected {e.contain}")
    if e.records_intact:
        for b, got in pat.items():
            if not got["record_ok"]:
                out.append(f"{b}: record not intact: {got['record_problems']}")
    return out


def _fires(w: When, now: float, t0: float, phase: str, signal: Any, batch_state: str, sup: Any = None,
           done: frozenset[str] = frozenset()) -> bool:
    if w.at_s is not None and now - t0 < w.at_s:
        return False
    if w.after is not None and w.after not in done:
        return False
    cell = getattr(sup, "patient_cell", None)
    if w.batch is not None:
        ex = sup.patients.get(w.batch) if sup is not None else None
        if ex is None:
            return False
        phase, batch_state = (ex.active_phase or "").rsplit("/", 1)[-1], ex.sm.state.value
    if w.open_zone is not None:
        if cell is None:
            return False
        if w.open_zone == "open" and not (w.batch in cell.open_now if w.batch else cell.open_now):
            return False
        if w.open_zone == "purge" and not (cell.open_now == {} and now < cell.arbiter.zone_ready_at):
            return False
    if w.exists is not None and (cell is None or cell.coi.genealogy.get(w.exists) is None):
        return False
    if w.module_dirty is not None and (cell is None or getattr(cell.seg.modules.get(w.module_dirty), "state", "")
                                       != "DIRTY"):
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
    if sc.site:
        cfg = site_config(cfg, sc.site)
    if sc.patients:
        tick_s = max(tick_s, sc.tick_s)
        if record is None:  # a patient batch needs its own record file beside the cell's
            import tempfile

            from ..records import BatchRecord

            record = BatchRecord(Path(tempfile.mkdtemp(prefix=f"scenario-{sc.id}-")) / "cell.db", _RecordClock())
    run = InProcessRun(cfg, tick_s=tick_s, record=record, users=users)
    sup, cell = run.sup, run.cell
    mon = InvariantMonitor(cell, sup)
    fired: list[dict[str, Any]] = []
    t0 = run.now()
    start_out = None
    if sc.start_batch:
        start_out = sup.run_batch(recipe_ref(sc, path, cfg), sc.batch_id, sc.user)
    patient_starts: dict[str, dict[str, Any]] = {}
    to_start = {p.batch_id: p for p in sc.patients if p.start_at_s is not None}
    run.patient_specs = {p.batch_id: p for p in sc.patients}  # type: ignore[attr-defined]
    pending = list(enumerate(sc.events))
    armed: dict[int, float] = {}
    last_event_t = t0
    while run.now() - t0 < sc.max_sim_s:
        for b, p in list(to_start.items()):
            if run.now() - t0 >= (p.start_at_s or 0.0):
                del to_start[b]
                patient_starts[b] = _start_patient(run, p)
        phase = (sup.active_phase or "").rsplit("/", 1)[-1]
        for i, ev in list(pending):
            if i not in armed and _fires(ev.when, run.now(), t0, phase, sup.signal, sup.sm.state.value, sup,
                                            frozenset(f.get("name", "") for f in fired)):
                armed[i] = run.now() + ev.when.delay_s
            if i in armed and run.now() >= armed[i]:
                pending.remove((i, ev))
                fired.append({"t": run.now(), "name": ev.name, "event": ev.label(), **_apply(ev, run)})
                last_event_t = run.now()
        if not pending and not to_start and run.now() - last_event_t >= sc.observe_s:
            want = sc.expect.batch_state
            # a patient batch expected in a state: run until it is there (or ended)
            settled = all(ex.sm.state.value == pe.state or ex.sm.state.final
                          for b, pe in sc.expect.batches.items() if pe.state
                          for ex in [sup.patients.get(b)] if ex is not None)
            if settled and (want is None or sup.sm.state.value == want or sup.sm.state.final):
                break
        run.tick_once()
        mon.check()
    summary = sup.summary()
    summary.update(scenario=sc.id, interlock=sc.interlock, events=fired, not_fired=[e.label() for _, e in pending],
                   violations=mon.violations, sim_time_s=round(run.now() - t0, 1),
                   wall_time_s=round(time.monotonic() - wall0, 2),
                   start=None if start_out is None else {"accepted": start_out.accepted, "code": start_out.code,
                                                         "reason": start_out.reason})
    if sup.patient_cell is not None:
        summary["violations"] = [*summary["violations"], *sup.patient_cell.violations]
        summary["segregation"] = sup.patient_cell.seg.status()
    summary["patients"] = {b: _patient_summary(ex) for b, ex in sup.patients.items()}
    summary["patient_starts"] = patient_starts
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
            target = sup.patients.get(dc.target) if dc.target else None
            if dc.target and target is None:
                return {"accepted": False, "code": "INVALID", "reason": f"unknown patient batch {dc.target!r}"}
            if target is not None:
                with sup.focused(target):
                    out = devs.raise_(dc.rule, dc.reason, dc.user)
            else:
                out = devs.raise_(dc.rule, dc.reason, dc.user)
        else:
            out = devs.approve(did, dc.user, dc.password, dc.meaning, dc.reason)
        return {"accepted": out.accepted, "code": out.code, "reason": out.reason}
    if ev.batch is None:
        return _apply_patient(ev, run)
    b = ev.batch
    out = sup.batch_command(b.command, b.user, b.password, b.meaning, b.reason, batch=b.target)
    return {"accepted": out.accepted, "code": out.code, "reason": out.reason}


def _res(out: Any) -> dict[str, Any]:
    return {"accepted": out.accepted, "code": out.code, "reason": out.reason}


def _start_patient(run: Any, p: PatientStart) -> dict[str, Any]:
    return _res(run.sup.run_batch(p.recipe, p.batch_id, p.user, coi=p.coi, din=p.din))


def _apply_patient(ev: Event, run: Any) -> dict[str, Any]:
    """The patient-batch events (start_patient, present, no_read, trip, segregation, arbiter)."""
    from ..coi import CustodyEventType, encode_label

    sup = run.sup
    pc = sup.patient_cell
    if pc is None:
        return {"accepted": False, "code": "INVALID", "reason": "this cell runs no patient batches"}
    if ev.start_patient is not None:
        return _start_patient(run, run.patient_specs[ev.start_patient])
    if ev.present is not None:
        pr = ev.present
        pc.reader.presented[(pr.container, pr.location)] = encode_label(pr.coi, pr.label_container, pr.din or None)
        return {"accepted": True, "code": "OK", "reason": ""}
    if ev.no_read is not None:
        pc.reader.no_reads[ev.no_read.container] = ev.no_read.reads
        return {"accepted": True, "code": "OK", "reason": ""}
    if ev.trip is not None:
        sup.hold_on_trip(ev.trip.reason, source=ev.trip.source)
        return {"accepted": True, "code": "OK", "reason": ""}
    if ev.segregation is not None:
        sc, seg = ev.segregation, pc.seg
        if sc.action == "spill":
            out = seg.spill(sc.batch, sc.material, confined=sc.confined, user=sc.user, reason=sc.reason)
        elif sc.action == "cleanup":
            out = seg.cleanup(sc.user, sc.method, vhp_cycle=sc.vhp_cycle, reason=sc.reason)
        elif sc.action == "line_clearance":
            out = seg.line_clearance(sc.user, reason=sc.reason)
        elif sc.action == "exit_contain":
            out = seg.exit_contain(sc.user, sc.password, sc.meaning, sc.reason)
        else:
            out = seg.clean(sc.module, sc.user, method=sc.method, reason=sc.reason)
        return _res(out)
    ac = ev.arbiter
    assert ac is not None
    arb, now = pc.arbiter, sup.now()
    if ac.action == "misplace":  # COI-20 through the chain of identity, as a process step would
        ex, other = sup.patients.get(ac.batch), sup.patients.get(ac.into_slot_of)
        if ex is None or other is None:
            return {"accepted": False, "code": "INVALID", "reason": "unknown batch"}
        g = pc.coi.genealogy
        product = f"BAG-{ex.batch_id}" if g.get(f"BAG-{ex.batch_id}") is not None else f"APH-{ex.batch_id}"
        here = g.container(product).location
        act, why = pc.scan_step(ex, CustodyEventType.INCUBATOR_IN, product, here, other.slot, equipment="INC")
        if act == "STOP":
            with sup.focused(ex):
                pc.hold(ex, f"COI-30: {why}", source="COI-20")
        ok = act == "PROCEED"
        entry = {"accepted": ok, "code": "OK" if ok else "COI", "reason": why}
        if not ok:
            sup.refusals.append({"t": now, "command": "misplace", "source": "scenario", **entry})
        return entry
    if ac.action == "vhp":
        req = arb.request("CELL", "vhp", {arb.resources.vhp}, now, safety=True)
    elif ac.action == "closed":
        req = arb.request(ac.batch, "scenario_closed", {"SEP"}, now)
    else:
        req = arb.request(ac.batch, "scenario_open", {"GRADE_A_OPEN_ZONE"}, now, open=True)
    arb.arbitrate(now)
    granted = req.state.value == "running"
    why = "; ".join(str(w) for w in arb.why(req, now))
    if granted:
        arb.release(req.id, now)
    else:
        arb.cancel(req.id)
        sup.refusals.append({"t": now, "command": f"arbiter.{ac.action}", "source": "scenario", "code": "WAIT",
                             "reason": why})
    return {"accepted": granted, "code": "OK" if granted else "WAIT", "reason": why}


def _patient_summary(ex: Any) -> dict[str, Any]:
    """A patient batch at the end of the run, from its own record."""
    from ..records import verify_file

    entries = list(ex.record.entries()) if ex.record is not None else []
    problems = []
    path = getattr(ex.record, "path", None)
    if path is not None:
        res = verify_file(path)
        if not res.ok:
            problems.append(f"verify: {res}")
    bad = [e.seq for e in entries if e.payload.get("coi") != ex.coi]
    if bad:
        problems.append(f"entries without the batch's COI: {bad[:5]}")
    if ex.record is not None and not ex.impacted and not ex.coi_stop:  # COI-01: every step scanned
        from ..coi import CustodyLog, check_custody

        custody = check_custody(CustodyLog(ex.record._record, "CELL-01"), ex.batch_id)
        if custody:
            problems.append(f"custody: {custody}")
    return {"state": ex.sm.state.value, "coi": ex.coi, "impacted": bool(ex.impacted), "held_reason": ex.held_reason,
            "deviation_rules": sorted({str(e.payload.get("rule", "")) for e in entries if e.kind == "deviation"}),
            "actions": sorted({e.action for e in entries}), "entries": len(entries), "record": str(path or ""),
            "record_ok": not problems, "record_problems": problems}


class _RecordClock:
    """Wall time for a scenario's record files (strictly increasing)."""

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        self.t = max(self.t + 1e-6, time.time())
        return self.t


def site_config(cfg: CellConfig, site: dict[str, Any]) -> CellConfig:
    """``cfg`` with a scenario's site values [M] changed (scheduling.yaml, segregation_parameters)."""
    import dataclasses

    sch = cfg.scheduling
    if sch is not None:
        ch = sch.changeover.model_copy(update={k: site[k] for k in ("t_purge_min", "t_line_clearance_min")
                                               if k in site})
        res = sch.resources
        if "vhp_with_product_inside" in site:
            res = res.model_copy(update={"vhp": res.vhp.model_copy(
                update={"with_product_inside": bool(site["vhp_with_product_inside"])})})
        sch = sch.model_copy(update={"changeover": ch, "resources": res})
    il = cfg.interlocks
    seg = il.segregation_parameters.model_copy(update={k: site[k] for k in ("product_contact",
                                                                           "glove_test_before_first_open")
                                                        if k in site})
    return dataclasses.replace(cfg, scheduling=sch, interlocks=il.model_copy(update={"segregation_parameters": seg}))


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, default=str)
