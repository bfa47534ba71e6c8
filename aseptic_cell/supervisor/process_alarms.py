"""Process alarms the supervisor raises (ISA-18.2 [ISA18.2]), evaluated generically from the
master alarm database (``config/alarms.yaml``):

* ``raised_by: condition`` — the alarm's declared condition over the supervisor's signals, with
  its on-delay, off-delay and deadband (ISA-18.2; alarm delays that ride through door
  transients, Annex 1 §4.15-4.18 [ANNEX1-2022] [M]). Limits are read from the cell
  configuration (``cfg:<path>`` operands), so each value has one source. Unknown (missing,
  stale, lost) signals neither raise nor clear an alarm: unknown is not normal.
* ``raised_by: cycle_result`` — a VHP / autoclave cycle report (a FAIL, or one of the cycle's
  alarm codes), :meth:`ProcessAlarms.cycle_result`.
* ``raised_by: comm_loss`` — :meth:`ProcessAlarms.watch_comm` (``<device id>_COMM_LOSS``, the
  same id the device node publishes).
* ``raised_by: stale_data`` — :meth:`ProcessAlarms.watch_stale` (``CELL_STALE_DATA``).

Environmental monitoring that acts (Annex 1 §9 [ANNEX1-2022] [M]): a condition with
``hold_batch: open_product`` holds a batch in progress while the active phase is of an
``open_product_phase_types`` type, at the tick the alarm is raised (or the tick an open phase
starts while it stands), like any phase failure: Held with every device in its safe state, the
trip recorded with the alarm id as its source; a signed restart while it stands is held again.
Each open-product phase gets an EM summary in the record (kind ``environment``): maximum
counts, the excursions and whether monitoring stayed valid.

The design states of ``design_state_conditions`` (e.g. ``vhp_running``) are set from the
signals every tick (suppression by design, ISA-18.2).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..alarms.models import AlarmCondition, AlarmDef
from ..config import CellConfig
from ..interlocks import SignalTable

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(port|rtp|door)\}")
_EPS = 1e-9
EM_SIGNALS = {
    "max_0_5_per_m3": "isolator.particles.0_5_per_m3",
    "max_5_0_per_m3": "isolator.particles.5_0_per_m3",
    "max_5_0_count": "isolator.particles.5_0_count",
}


class AlarmConfigError(ValueError):
    """A condition in ``alarms.yaml`` names a configuration value that does not exist."""


def resolve(cfg: CellConfig, operand: Any, where: str) -> Any:
    """An operand: a literal, or ``cfg:<dotted path>`` into the cell configuration.

    Raises:
        AlarmConfigError: the path does not lead to a value.
    """
    if not (isinstance(operand, str) and operand.startswith("cfg:")):
        return operand
    node: Any = cfg
    for part in operand[4:].split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif hasattr(node, part):
            node = getattr(node, part)
        else:
            raise AlarmConfigError(f"{where}: {operand!r} does not name a configuration value (at {part!r})")
    if isinstance(node, bool) or not isinstance(node, (int, float, str)):
        raise AlarmConfigError(f"{where}: {operand!r} is not a number or text ({node!r})")
    return node


@dataclass
class _Compiled:
    """A condition with its operands resolved and its placeholder bindings."""

    cond: AlarmCondition
    bindings: list[dict[str, str]]
    limits: dict[int, Any]  # id(leaf) -> resolved limit (offset applied)
    deadband: float
    on_delay_s: float
    off_delay_s: float


@dataclass
class _Track:
    raised: bool = False
    present_since: float | None = None
    absent_since: float | None = None
    message: str = ""


@dataclass
class _EmWindow:
    phase: str
    phase_type: str
    t_start: float
    maxima: dict[str, float] = field(default_factory=dict)
    excursions: list[dict[str, Any]] = field(default_factory=list)
    monitoring_valid: bool = True


class ProcessAlarms:
    """Raises and returns to normal the supervisor's process alarms.

    Args:
        cfg: the cell configuration (limits, device ids, the alarm database ``cfg.alarms``).
        alarms: the :class:`~aseptic_cell.alarms.AlarmManager`.
        signal: the supervisor's signal reader (None = unknown or stale).
        audit: the journal's audit function (comm loss, EM summaries and excursions are recorded).
        sup: the :class:`~aseptic_cell.supervisor.core.Supervisor` (clock, batch state, active
            phase, hold, signal table); None: conditions only, on ``now``.
        now: the clock when ``sup`` is None.

    Raises:
        AlarmConfigError: a condition names a configuration value that does not exist.
    """

    def __init__(self, cfg: CellConfig, alarms: Any, signal: Callable[[str], Any],
                 audit: Callable[[str, str, str, str, Mapping[str, Any]], None], sup: Any = None,
                 now: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self.alarms = alarms
        self.signal = signal
        self.audit = audit
        self.sup = sup
        self._now = now or (sup.now if sup is not None else (lambda: 0.0))
        self.active: set[str] = set()
        """Condition alarms raised and not yet returned to normal."""
        self.comm_lost: set[str] = set()
        """Device nodes whose communication is lost."""
        self.stale: list[str] = []
        """Supervised signals that are stale now."""
        self.em_summaries: list[dict[str, Any]] = []
        """EM summaries of the open-product phases of this supervisor (also in the record)."""
        self.holds: list[dict[str, Any]] = []
        """Holds raised by environmental monitoring: alarm, phase, time."""
        defs: list[AlarmDef] = list(alarms.definitions())
        file = cfg.alarms
        self.open_types = set(getattr(file, "open_product_phase_types", []) or [])
        self._design = {name: self._compile(c, f"design state {name}")
                        for name, c in (getattr(file, "design_state_conditions", {}) or {}).items()}
        self._design_value: dict[str, bool] = {}
        self._conds = {d.id: self._compile(d.condition, f"alarm {d.id}")
                       for d in defs if d.raised_by == "condition" and d.condition is not None}
        self._defs = {d.id: d for d in defs}
        self._tracks = {aid: _Track() for aid in self._conds}
        self.supervised: list[str] = sorted({
            _PLACEHOLDER.sub(lambda m, b=b: b[m.group(1)], leaf.signal or "")  # type: ignore[misc]
            for c in self._conds.values() for b in c.bindings for leaf in c.cond.leaves()})
        """Every signal a condition reads (placeholders filled): the data CELL_STALE_DATA watches."""
        self._names: dict[tuple[int, int], str] = {}
        """(leaf, binding) -> the signal name with its placeholders filled (filled once, not every tick)."""
        self._em: _EmWindow | None = None
        self._listening: list[Any] = []  # phase state machines listened to (kept: ids are not reused)

    # ------------------------------------------------------------------ compile
    def _compile(self, cond: AlarmCondition, where: str) -> _Compiled:
        names = {m for leaf in cond.leaves() for m in _PLACEHOLDER.findall(leaf.signal or "")}
        iso = self.cfg.layout.isolator
        values = {"port": [g.id for g in iso.glove_ports], "rtp": [r.id for r in iso.rtps], "door": ["A", "B"]}
        keys = sorted(names)
        bindings: list[dict[str, str]] = [dict(zip(keys, combo, strict=True))
                                          for combo in itertools.product(*(values[k] for k in keys))]
        limits: dict[int, Any] = {}
        for leaf in cond.leaves():
            lim = resolve(self.cfg, leaf.limit, where)
            if leaf.offset:
                if not isinstance(lim, (int, float)) or isinstance(lim, bool):
                    raise AlarmConfigError(f"{where}: an offset needs a numeric limit, got {lim!r}")
                lim = float(lim) + leaf.offset
            limits[id(leaf)] = lim
        nums = {}
        for name in ("deadband", "on_delay_s", "off_delay_s"):
            v = resolve(self.cfg, getattr(cond, name), where)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise AlarmConfigError(f"{where}: {name} must be a finite number >= 0, got {v!r}")
            nums[name] = float(v)
        return _Compiled(cond, bindings or [{}], limits, nums["deadband"], nums["on_delay_s"], nums["off_delay_s"])

    # ------------------------------------------------------------------ evaluation
    def _leaf(self, c: _Compiled, leaf: AlarmCondition, b: Mapping[str, str], raised: bool) -> bool | None:
        key = (id(leaf), id(b))  # the compiled conditions and their bindings live as long as self
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = _PLACEHOLDER.sub(lambda m: b[m.group(1)], leaf.signal or "")
        v = self.signal(name)
        if v is None:
            return None
        lim = c.limits[id(leaf)]
        op = leaf.op
        if op in ("eq", "ne"):
            same = bool(v == lim) if not isinstance(lim, str) else str(v) == lim
            return same if op == "eq" else not same
        if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(lim, (bool, str)):
            return None  # a non-numeric reading of a numeric condition is unknown
        x, limit = float(v), float(lim)
        db = c.deadband if raised else 0.0  # return to normal only beyond the deadband
        if op == "lt":
            return x < limit + db
        if op == "le":
            return x <= limit + db
        if op == "gt":
            return x > limit - db
        return x >= limit - db  # ge

    def _eval(self, c: _Compiled, node: AlarmCondition, b: Mapping[str, str], raised: bool) -> bool | None:
        if node.signal is not None:
            return self._leaf(c, node, b, raised)
        vals = [self._eval(c, k, b, raised) for k in (node.all or node.any or [])]
        if node.all is not None:
            return False if False in vals else (None if None in vals else True)
        return True if True in vals else (None if None in vals else False)

    def condition(self, c: _Compiled, raised: bool) -> bool | None:
        """True for any binding (``{port}`` etc.) → True; all False → False; else unknown."""
        vals = [self._eval(c, c.cond, b, raised) for b in c.bindings]
        return True if True in vals else (None if None in vals else False)

    def evaluate(self) -> None:
        """Every tick: design states, condition alarms with their delays, holds, EM summaries."""
        now = self._now()
        for name, c in self._design.items():
            v = self.condition(c, self._design_value.get(name, False))
            if v is not None and v != self._design_value.get(name):
                self._design_value[name] = v
                try:
                    self.alarms.set_design_state(name, v)
                except Exception as exc:  # noqa: BLE001 - alarm handling must never stop supervision
                    log.error("design state %s: %r", name, exc)
        for aid, c in self._conds.items():
            try:
                self._step(aid, c, now)
            except Exception as exc:  # noqa: BLE001 - alarm handling must never stop supervision
                log.error("process alarm %s: %r", aid, exc)
        self._em_tick(now)

    def _step(self, aid: str, c: _Compiled, now: float) -> None:
        tr = self._tracks[aid]
        v = self.condition(c, tr.raised)
        if v is None:
            return
        if not tr.raised:
            if not v:
                tr.present_since = None
                return
            if tr.present_since is None:
                tr.present_since = now
            if now - tr.present_since >= c.on_delay_s - _EPS:
                tr.raised, tr.absent_since = True, None
                tr.message = self._message(aid, c)
                self.alarms.raise_(aid, message=tr.message[:500])
                self.active.add(aid)
                self._em_excursion(aid, now, tr.message)
        else:
            if v:
                tr.absent_since = None
            else:
                if tr.absent_since is None:
                    tr.absent_since = now
                if now - tr.absent_since >= c.off_delay_s - _EPS:
                    tr.raised, tr.present_since = False, None
                    self.alarms.clear(aid)
                    self.active.discard(aid)
                    return
        if tr.raised and c.cond.hold_batch != "never":
            self._hold(aid, c, tr)

    def _message(self, aid: str, c: _Compiled) -> str:
        d = self._defs[aid]
        parts = []
        for leaf in c.cond.leaves():
            for b in c.bindings:
                name = _PLACEHOLDER.sub(lambda m, b=b: b[m.group(1)], leaf.signal or "")  # type: ignore[misc]
                v = self.signal(name)
                if v is not None and self._leaf(c, leaf, b, False):
                    parts.append(f"{name} = {v!r} ({leaf.op} {c.limits[id(leaf)]!r})")
        delay = f", for {c.on_delay_s:g} s" if c.on_delay_s else ""
        return f"{d.description}: {'; '.join(parts) or 'condition present'}{delay}"

    # ------------------------------------------------------------------ holds and EM
    def _open_phase(self) -> str:
        """The active phase when it is an open-product phase in progress, else ""."""
        sup = self.sup
        if sup is None or not sup.active_phase:
            return ""
        path = sup.active_phase
        return path if sup.phase_type(path) in self.open_types else ""

    def _hold(self, aid: str, c: _Compiled, tr: _Track) -> None:
        sup = self.sup
        if sup is None:
            return
        self._hold_patients(aid, c, tr)
        if sup.sm.state.value not in ("Running", "Pausing", "Paused", "Restarting"):
            return
        phase = self._open_phase()
        if c.cond.hold_batch == "open_product" and not phase:
            return
        # a batch in progress is held; a signed restart while the excursion stands is held again
        why = f"{aid}: {tr.message}" + (f" during open-product phase {phase}" if phase else "")
        self.holds.append({"t": self._now(), "alarm": aid, "phase": phase, "state": sup.sm.state.value})
        self.audit("environment", "system", f"{aid}.hold", why[:500], {"alarm_id": aid, "phase": phase})
        sup.hold(why[:500], trip=True, source=aid)  # as any phase failure: Held with every device safe

    def _hold_patients(self, aid: str, c: _Compiled, tr: _Track) -> None:
        """The patient batches (issue 14): an ``open_product`` alarm while a patient batch is in an
        open phase (``PatientCell.open_now``), or an ``always`` alarm while any is in progress, is a
        cell-wide trip (INT-01): every batch's active phase holds, incubation runs on, and the
        batches open during it become IMPACTED at the restart (SEG-06). Raised again each tick while
        the alarm stands, so a batch restarted into an open phase meanwhile is held again."""
        sup = self.sup
        cell = getattr(sup, "patient_cell", None)
        patients = getattr(sup, "patients", None)
        if sup is None or cell is None or not patients:
            return
        busy = ("Running", "Pausing", "Paused", "Restarting")
        if not any(ex.sm.state.value in busy for ex in patients.values()):
            return
        opened = sorted(b for b in cell.open_now if b in patients and patients[b].sm.state.value in busy)
        if c.cond.hold_batch == "open_product" and not opened:
            return
        why = f"{aid}: {tr.message}" + (f" during the open phase of {', '.join(opened)}" if opened else "")
        sup.hold_on_trip(why[:500], source=aid)

    def _em_tick(self, now: float) -> None:
        sup = self.sup
        phase = self._open_phase()
        running = bool(phase) and sup is not None and sup.phases[phase].state.value == "Running"
        w = self._em
        if w is not None and (not running or w.phase != phase):
            self._em_close(now)
            w = None
        if running and w is None:
            w = self._em = _EmWindow(phase, str(sup.phase_type(phase)), now)
            sm = sup.phases[phase]
            if all(x is not sm for x in self._listening):  # the summary is written when the phase leaves Running
                self._listening = [*self._listening[-63:], sm]
                sm.add_listener(lambda tr, path=phase: self._on_phase(path, tr))
            for aid in self.active:  # an excursion standing when the phase starts belongs to it
                if self._defs[aid].source.startswith(f"{self.cfg.layout.isolator.id}.Particles"):
                    w.excursions.append({"t": now, "alarm_id": aid, "limit_type": self._defs[aid].limit_type,
                                         "standing": True})
        if w is not None:
            self._em_tick_values(w)

    def _em_tick_values(self, w: _EmWindow) -> None:
        for key, name in EM_SIGNALS.items():
            v = self.signal(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                w.maxima[key] = max(w.maxima.get(key, 0.0), float(v))
        if self.signal("isolator.particles.monitor_running") is not True or \
                self.signal("isolator.particles.sample_flow_ok") is not True:
            w.monitoring_valid = False

    def _on_phase(self, path: str, tr: Any) -> None:
        w = self._em
        if w is not None and w.phase == path and getattr(tr.new, "value", "") != "Running":
            try:
                self._em_tick_values(w)
                self._em_close(float(getattr(tr, "t", self._now())))
            except Exception as exc:  # noqa: BLE001 - observation never becomes control
                log.error("EM summary of %s: %r", path, exc)

    def _em_excursion(self, aid: str, now: float, message: str) -> None:
        w = self._em
        d = self._defs[aid]
        if w is None or d.limit_type not in ("alert", "action", "low", "band"):
            return
        if not d.source.startswith(f"{self.cfg.layout.isolator.id}."):
            return
        w.excursions.append({"t": now, "alarm_id": aid, "limit_type": d.limit_type, "message": message[:300]})

    def _em_close(self, now: float) -> None:
        w = self._em
        self._em = None
        if w is None:
            return
        pc = self.cfg.layout.isolator.particles
        summary = {
            "phase": w.phase, "phase_type": w.phase_type, "t_start": w.t_start, "t_end": now,
            **{k: w.maxima.get(k) for k in EM_SIGNALS},
            "alert_excursions": sum(1 for e in w.excursions if e.get("limit_type") == "alert"),
            "action_excursions": sum(1 for e in w.excursions if e.get("limit_type") == "action"),
            "excursions": w.excursions,
            "monitoring_valid": w.monitoring_valid,
            "limits": {"alert_0_5_per_m3": pc.alert_0_5_per_m3, "action_0_5_per_m3": pc.action_0_5_per_m3,
                       "alert_5_0_per_m3": pc.alert_5_0_per_m3, "action_5_0_per_m3": pc.action_5_0_per_m3},
            "sample_l": pc.sample_flow_l_min * pc.sample_time_s / 60.0,
        }
        self.em_summaries.append(summary)
        self.audit("environment", "system", f"{w.phase}.em_summary",
                   f"EM summary of open-product phase {w.phase}", summary)

    # ------------------------------------------------------------------ other owners
    def raise_(self, alarm_id: str, message: str) -> None:
        try:
            self.alarms.raise_(alarm_id, message=message[:500])
        except Exception as exc:  # noqa: BLE001 - an unknown id must not stop supervision
            log.error("alarm %s: %r", alarm_id, exc)

    def cycle_result(self, key: str, report: Mapping[str, Any]) -> None:
        """A VHP / autoclave cycle report: raise the ``cycle_result`` alarms it triggers (a FAIL,
        or one of their codes); return the others of that cycle to normal."""
        verdict = report.get("result")
        if verdict not in ("PASS", "FAIL"):
            return
        found: dict[str, str] = {}
        for a in report.get("alarms", []) or []:
            if isinstance(a, Mapping):
                found.setdefault(str(a.get("code", "")), str(a.get("text", "")))
        reasons = "; ".join(str(r) for r in report.get("reasons", []) or [])
        for d in self._defs.values():
            if d.raised_by != "cycle_result" or d.cycle is None or d.cycle.result != key:
                continue
            hits = [c for c in d.cycle.codes if c in found]
            if (not d.cycle.codes and verdict == "FAIL") or hits:
                text = "; ".join(f"{c}: {found[c]}" for c in hits) if hits else reasons
                self.raise_(d.id, f"{key} cycle {report.get('run_id', '')} {verdict}: {text}")
            else:
                try:
                    self.alarms.clear(d.id)
                except Exception as exc:  # noqa: BLE001
                    log.error("clear %s: %r", d.id, exc)

    def watch_comm(self, node_devices: Mapping[str, str], signals: SignalTable) -> None:
        """COMM_LOSS alarm per device whose signals the port marked lost; cleared when back."""
        for node, dev in node_devices.items():
            lost = signals.comm_lost(dev)
            if lost and node not in self.comm_lost:
                self.comm_lost.add(node)
                self.raise_(f"{dev}_COMM_LOSS", f"communication with {dev} lost")
                self.audit("alarm", "system", f"{dev}.comm_lost", "communication lost", {})
            elif not lost and node in self.comm_lost:
                self.comm_lost.discard(node)
                try:
                    self.alarms.clear(f"{dev}_COMM_LOSS")
                except Exception as exc:  # noqa: BLE001 - not defined in this site's alarms.yaml
                    log.warning("clear %s_COMM_LOSS: %r", dev, exc)

    def watch_stale(self, signals: SignalTable, stale_after_s: float) -> None:
        """``CELL_STALE_DATA`` while a signal a condition reads is older than ``stale_after_s``
        (a device whose communication is lost has its own alarm)."""
        now = self._now()
        stale = []
        for name in self.supervised:
            e = signals.get(name)
            if e is not None and not signals.comm_lost(e.source) and now - e.t > stale_after_s:
                stale.append(name)
        if stale and stale != self.stale:
            self.raise_("CELL_STALE_DATA", f"stale (> {stale_after_s:g} s): {', '.join(stale)}")
        elif not stale and self.stale:
            try:
                self.alarms.clear("CELL_STALE_DATA")
            except Exception as exc:  # noqa: BLE001
                log.error("clear CELL_STALE_DATA: %r", exc)
        self.stale = stale
