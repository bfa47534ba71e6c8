"""The supervisor's interlock engine over the declarative catalogue (``config/interlocks.yaml``).

ARCHITECTURE rule 3: this is the supervisor layer of the interlocks (each device node keeps
its own hard interlocks). Rule 6: a missing, stale, NaN or wrongly-typed signal, or one whose
device lost communication, is *unknown*, and unknown denies. Conditions use three-valued
(Kleene) logic: ``not`` of unknown is unknown, ``all`` is true only if every branch is true,
``any`` is true if some branch is true.

Conditions are compiled once into closures per concrete instance (placeholders filled), so a
``check`` costs a few dictionary look-ups per comparison; explanations (the failed clauses with
their actual values) are built only for rules that are not satisfied.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aseptic_cell.config.interlocks import (
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    InterlockCatalogue,
    InterlockRule,
    NotOf,
    iter_comparisons,
)

from .signals import Sample, SignalTable

log = logging.getLogger(__name__)

Tri = bool | None
"""True, False, or None = unknown."""

# (entries, lost sources, now) -> Tri
_Eval = Callable[[Mapping[str, Sample], "frozenset[str] | set[str]", float], Tri]
_Explain = Callable[[Mapping[str, Sample], "frozenset[str] | set[str]", float], list["Clause"]]

_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")
_ARG_VALUE = re.compile(r"^[A-Za-z0-9_\-]+$")
_CACHE_LIMIT = 4096
FULL_EVALUATION_PERIOD_S = 10.0
"""Default bound, in the engine clock's seconds, between two full evaluations of every rule by
:meth:`InterlockEngine.evaluate_all` (a check of the incremental one, which compares the signals
themselves); ``parameters.full_evaluation_period_s`` of the catalogue overrides it [M]."""
_OP_SYMBOL = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in"}
_OP_FUNC: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge,
}

State = Literal["satisfied", "not_satisfied", "unknown"]
ClauseState = Literal["false", "missing", "comm_lost", "stale", "nan", "type", "negated", "no_instance"]


class Clock(Protocol):
    def now(self) -> float: ...


class BypassSource(Protocol):
    def active_for(self, rule_id: str) -> str | None:
        """The id of the active, approved bypass of ``rule_id``, or None."""

    def used(self, decision: Decision, bypassed: list[tuple[str, str, str]]) -> None:
        """Record that ``decision`` was allowed only under these (rule, bypass id, clauses)."""


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Clause:
    """One clause that is not satisfied, with the value that made it so."""

    signal: str
    state: ClauseState
    text: str
    actual: Any = None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Reason:
    """Why one rule (instance) denies an action."""

    rule_id: str
    title: str
    basis: str
    severity: str
    binding: Mapping[str, str]
    state: State
    clauses: tuple[Clause, ...]

    def __str__(self) -> str:
        where = ""
        if self.binding:
            where = " [" + ", ".join(f"{k}={v}" for k, v in sorted(self.binding.items())) + "]"
        what = "unknown" if self.state == "unknown" else "not satisfied"
        return f"{self.rule_id}{where} {self.title} ({what}): " + "; ".join(c.text for c in self.clauses)


@dataclass(frozen=True)
class Decision:
    """The engine's answer for one requested action."""

    allowed: bool
    action: str
    args: Mapping[str, str]
    reasons: tuple[Reason, ...] = ()
    unguarded: bool = False
    """No catalogue rule guards this action (allowed here; the device layer still checks)."""
    t: float = 0.0
    bypassed: tuple[Reason, ...] = ()
    """Rules that denied but are under an active, approved bypass (the action is recorded as such)."""

    @property
    def denied_by(self) -> list[str]:
        return list(dict.fromkeys(r.rule_id for r in self.reasons))

    @property
    def message(self) -> str:
        if self.allowed:
            note = " (no interlock rule guards this action)" if self.unguarded else ""
            return f"{self.action}: allowed{note}"
        return f"{self.action}: denied: " + " | ".join(str(r) for r in self.reasons)


@dataclass(frozen=True)
class RuleStatus:
    """Per-tick state of one rule instance."""

    rule_id: str
    title: str
    severity: str
    binding: Mapping[str, str]
    state: State
    clauses: tuple[Clause, ...] = ()
    on_tick: str | None = None
    guards: tuple[str, ...] = ()

    @property
    def satisfied(self) -> bool:
        return self.state == "satisfied"

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.rule_id, tuple(sorted(self.binding.items())))


@dataclass(frozen=True)
class Trip:
    """An on-tick rule whose condition just stopped holding: the supervisor must act."""

    rule_id: str
    action: str
    """The rule's ``on_tick`` reaction: ``abort_vhp``, ``protective_stop`` or ``hold_batch``."""
    binding: Mapping[str, str]
    status: RuleStatus


# ----------------------------------------------------------------------------- compilation
def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "str"


def _has_kind(v: Any, kind: str) -> bool:
    if kind == "bool":
        return v is True or v is False
    if kind == "number":
        return not isinstance(v, bool) and isinstance(v, (int, float))
    return isinstance(v, str)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class _Node:
    ev: _Eval
    why_not: _Explain
    """Clauses explaining why the node is not True (call only when it is not)."""
    why: _Explain
    """Clauses explaining why the node is True (call only when it is)."""


def _compile_comparison(c: Comparison, signal: str, params: Mapping[str, float], stale: float) -> _Node:
    if c.param is not None:
        expected: Any = params[c.param]
        expected_txt = f"{_fmt(expected)} [{c.param}]"
    else:
        expected = c.value
        expected_txt = (
            "{" + ", ".join(_fmt(x) for x in expected) + "}" if isinstance(expected, list) else _fmt(expected)
        )
    sym = _OP_SYMBOL[c.op]
    if c.op == "in":
        assert isinstance(expected, list)
        options = tuple((x, _kind_of(x)) for x in expected)
        kinds = {k for _, k in options}
        kind_txt = "/".join(sorted(kinds))

        def typed(v: Any) -> bool:
            return any(_has_kind(v, k) for k in kinds)

        def compare(v: Any) -> bool:
            return any(_has_kind(v, k) and v == x for x, k in options)
    else:
        kind = _kind_of(expected)
        kind_txt = kind
        fn = _OP_FUNC[c.op]

        if kind == "bool":
            def typed(v: Any) -> bool:
                return v is True or v is False
        elif kind == "number":
            def typed(v: Any) -> bool:
                return not isinstance(v, bool) and isinstance(v, (int, float))
        else:
            def typed(v: Any) -> bool:
                return isinstance(v, str)

        def compare(v: Any) -> bool:
            return fn(v, expected)

    def ev(entries: Mapping[str, Sample], lost: Any, now: float) -> Tri:
        e = entries.get(signal)
        if e is None:
            return None
        v, t, src = e
        if src in lost:
            return None
        age = now - t
        if age > stale or age < -stale:
            return None
        if v != v:  # NaN
            return None
        if not typed(v):
            return None
        return compare(v)

    def describe(entries: Mapping[str, Sample], lost: Any, now: float) -> Clause:
        e = entries.get(signal)
        if e is None:
            return Clause(signal, "missing", f"signal {signal} is missing")
        v, t, src = e
        if src in lost:
            return Clause(signal, "comm_lost", f"signal {signal}: comm lost with {src}", v)
        age = now - t
        if age > stale:
            return Clause(signal, "stale", f"signal {signal} is stale (age {age:.1f} s > {stale:.1f} s)", v)
        if age < -stale:
            return Clause(signal, "stale",
                          f"signal {signal} is time-stamped {-age:.1f} s in the future (> {stale:.1f} s)", v)
        if isinstance(v, float) and math.isnan(v):
            return Clause(signal, "nan", f"signal {signal} is NaN", v)
        if not typed(v):
            return Clause(signal, "type",
                          f"signal {signal} = {_fmt(v)} has type {type(v).__name__}, expected {kind_txt}", v)
        ok = compare(v)
        return Clause(signal, "false" if not ok else "negated",
                      f"{signal} = {_fmt(v)} (required {sym} {expected_txt})", v)

    def explain(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
        return [describe(entries, lost, now)]

    return _Node(ev, explain, explain)


def _compile(cond: Condition, fill: Callable[[str], str], params: Mapping[str, float], stale: float) -> _Node:
    if isinstance(cond, Comparison):
        return _compile_comparison(cond, fill(cond.signal), params, stale)
    if isinstance(cond, AllOf):
        kids = tuple(_compile(c, fill, params, stale) for c in cond.all)
        evs = tuple(k.ev for k in kids)

        def ev_all(entries: Mapping[str, Sample], lost: Any, now: float) -> Tri:
            res: Tri = True
            for f in evs:
                r = f(entries, lost, now)
                if r is False:
                    return False
                if r is None:
                    res = None
            return res

        def why_not_all(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
            out: list[Clause] = []
            for k in kids:
                if k.ev(entries, lost, now) is not True:
                    out.extend(k.why_not(entries, lost, now))
            return out

        def why_all(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
            return [c for k in kids for c in k.why(entries, lost, now)]

        return _Node(ev_all, why_not_all, why_all)
    if isinstance(cond, AnyOf):
        kids = tuple(_compile(c, fill, params, stale) for c in cond.any)
        evs = tuple(k.ev for k in kids)

        def ev_any(entries: Mapping[str, Sample], lost: Any, now: float) -> Tri:
            res: Tri = False
            for f in evs:
                r = f(entries, lost, now)
                if r is True:
                    return True
                if r is None:
                    res = None
            return res

        def why_not_any(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
            return [c for k in kids for c in k.why_not(entries, lost, now)]

        def why_any(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
            for k in kids:
                if k.ev(entries, lost, now) is True:
                    return k.why(entries, lost, now)
            return []

        return _Node(ev_any, why_not_any, why_any)
    if isinstance(cond, NotOf):
        inner = _compile(cond.not_, fill, params, stale)
        iev = inner.ev

        def ev_not(entries: Mapping[str, Sample], lost: Any, now: float) -> Tri:
            r = iev(entries, lost, now)
            return None if r is None else not r

        def why_not_not(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
            if iev(entries, lost, now) is None:
                return inner.why_not(entries, lost, now)
            return [Clause(c.signal, "negated", f"not ({c.text})", c.actual)
                    for c in inner.why(entries, lost, now)]

        def why_not_(entries: Mapping[str, Sample], lost: Any, now: float) -> list[Clause]:
            return inner.why_not(entries, lost, now)

        return _Node(ev_not, why_not_not, why_not_)
    raise TypeError(f"unsupported condition node {type(cond).__name__}")  # pragma: no cover


def placeholders_of(rule: InterlockRule) -> frozenset[str]:
    """Placeholder names used by a rule's signals (``{other}`` included as ``other``)."""
    return frozenset(ph for c in iter_comparisons(rule.when) for ph in _PLACEHOLDER.findall(c.signal))


@dataclass
class _Instance:
    rule: InterlockRule
    binding: dict[str, str]
    node: _Node
    signals: tuple[str, ...] = ()
    """The concrete signals the condition reads (its only inputs besides the time)."""


@dataclass
class _RuleInfo:
    rule: InterlockRule
    placeholders: frozenset[str]
    instances: list[_Instance] = field(default_factory=list)
    """Concrete instances known at construction (used by evaluate_all)."""


# ----------------------------------------------------------------------------- engine
class InterlockEngine:
    """Evaluates the interlock catalogue against a :class:`SignalTable`.

    Args:
        catalogue: the validated catalogue (``load_config(dir).interlocks``).
        clock: an object with ``now() -> float`` (or a zero-argument callable), in the same
            time base as the signal timestamps.
        signals: the table the device layer updates; a new empty one if omitted.
        port_ids: glove port ids (``each_glove_port`` scope and ``{port}`` instances).
        rtp_ids: RTP ids (``{rtp}`` instances for :meth:`evaluate_all`).
        door_ids: door ids for rules using ``{door}`` without ``{other}`` (robot swept volumes).
        hatch_doors: the two hatch doors; ``{other}`` is the opposite of ``{door}``.

    Raises:
        ValueError: a rule has scope ``each_glove_port`` but ``port_ids`` is empty, or
            ``parameters.stale_after_s`` is missing or not positive.
    """

    def __init__(
        self,
        catalogue: InterlockCatalogue,
        clock: Clock | Callable[[], float],
        signals: SignalTable | None = None,
        *,
        port_ids: Iterable[str] = (),
        rtp_ids: Iterable[str] = (),
        door_ids: Iterable[str] = (),
        hatch_doors: tuple[str, str] = ("A", "B"),
    ) -> None:
        self.catalogue = catalogue
        now = getattr(clock, "now", None)
        self._now: Callable[[], float] = now if callable(now) else clock  # type: ignore[assignment]
        if not callable(self._now):
            raise TypeError("clock must have a now() method or be callable")
        self.signals = signals if signals is not None else SignalTable()
        self.bypass: BypassSource | None = None
        """Bypass management (``supervisor/bypass.py``): consulted only for ``bypassable`` rules."""
        self.port_ids = tuple(port_ids)
        self.rtp_ids = tuple(rtp_ids)
        self.door_ids = tuple(door_ids)
        self.hatch_doors = tuple(hatch_doors)
        if len(self.hatch_doors) != 2:
            raise ValueError(f"hatch_doors must name exactly two doors, got {hatch_doors!r}")
        for ident in (*self.port_ids, *self.rtp_ids, *self.door_ids, *self.hatch_doors):
            if not isinstance(ident, str) or not _ARG_VALUE.match(ident):
                raise ValueError(f"id {ident!r} must be letters, digits, '_' or '-'")
        stale = catalogue.parameters.get("stale_after_s")
        if stale is None or not stale > 0:
            raise ValueError(
                "interlock catalogue needs parameters.stale_after_s > 0 (rule 6: stale = unsafe)")
        self.stale_after_s = float(stale)
        self._params = dict(catalogue.parameters)
        self._rules: list[_RuleInfo] = []
        self._by_action: dict[str, list[_RuleInfo]] = {}
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], _Instance] = {}
        for rule in catalogue.rules:
            info = _RuleInfo(rule, placeholders_of(rule))
            if rule.scope == "each_glove_port" and not self.port_ids:
                raise ValueError(f"rule {rule.id} has scope each_glove_port but no glove port ids were given")
            for binding in self._known_bindings(info):
                info.instances.append(self._instance(info, binding))
            self._rules.append(info)
            for action in rule.guards:
                self._by_action.setdefault(action, []).append(info)
        period = catalogue.parameters.get("full_evaluation_period_s", FULL_EVALUATION_PERIOD_S)
        if isinstance(period, bool) or not isinstance(period, (int, float)) or not 0 < period < math.inf:
            raise ValueError(f"parameters.full_evaluation_period_s must be a number > 0, got {period!r}")
        self.full_evaluation_period_s = float(period)
        # incremental evaluate_all: one slot per rule instance (catalogue order), and per signal the
        # slots that read it
        none: list[_Instance | None] = [None]  # a rule with no configured instance: one fixed slot
        self._slots: list[tuple[_RuleInfo, _Instance | None]] = [
            (info, inst) for info in self._rules for inst in (info.instances or none)]
        self._readers: dict[str, list[int]] = {}
        for i, (_, inst) in enumerate(self._slots):
            for name in inst.signals if inst is not None else ():
                self._readers.setdefault(name, []).append(i)
        self._last: list[RuleStatus] | None = None
        self._last_t = -math.inf
        self._next_full = -math.inf
        self._table: SignalTable | None = None
        self._lost_seen: frozenset[str] = frozenset()
        self._seen: dict[str, tuple[Any, str, bool] | None] = {}
        """Per signal read by a rule: (value, source, fresh) at the last evaluation, None = missing."""
        self.full_evaluations = 0
        self.incremental_evaluations = 0
        self.incremental_mismatches = 0

    def rebind(self, clock: Clock | Callable[[], float], signals: SignalTable | None = None) -> None:
        """Use this (compiled) engine for another cell: a fresh signal table and its clock."""
        now = getattr(clock, "now", None)
        fn = now if callable(now) else clock
        if not callable(fn):
            raise TypeError("clock must have a now() method or be callable")
        self._now = fn
        self.signals = signals if signals is not None else SignalTable()
        self.bypass = None
        self._reset_incremental()

    @classmethod
    def from_config(cls, cfg: Any, clock: Clock | Callable[[], float],
                    signals: SignalTable | None = None) -> InterlockEngine:
        """Build from a loaded :class:`~aseptic_cell.config.CellConfig` (ids from cell/geometry)."""
        iso = cfg.layout.isolator
        rtps = [r.id for r in iso.rtps]
        doors = ["hatch_a", "hatch_b", "autoclave_load", "autoclave_unload",
                 *(f"{r.lower()}_alpha" for r in rtps)]
        for box in cfg.geometry.boxes:
            kind, _, ref = box.active.partition(":")
            if kind == "door_closed" and ref not in doors:
                doors.append(ref)
        return cls(cfg.interlocks, clock, signals, port_ids=[g.id for g in iso.glove_ports],
                   rtp_ids=rtps, door_ids=doors)

    # ------------------------------------------------------------------ public API
    @property
    def guarded_actions(self) -> list[str]:
        return sorted(self._by_action)

    def rules_for(self, action: str) -> list[InterlockRule]:
        return [info.rule for info in self._by_action.get(action, ())]

    def check(self, action: str, args: Mapping[str, str] | None = None) -> Decision:
        """Is ``action`` allowed now? Evaluates every rule guarding it.

        Args:
            action: e.g. ``"hatch.open_door"``.
            args: placeholder values, e.g. ``{"door": "A"}``, ``{"port": "GP2"}``,
                ``{"rtp": "RTP1"}``. ``other`` is derived from ``door`` for the hatch.

        Raises:
            ValueError: a guarding rule needs an argument that is not given (or cannot be
                derived), or an argument value is not a plain id.
        """
        args = dict(args) if args else {}
        for k, v in args.items():
            if not isinstance(v, str) or not _ARG_VALUE.match(v):
                raise ValueError(
                    f"{action}: argument {k}={v!r} must be a plain id (letters, digits, '_', '-')")
        infos = self._by_action.get(action)
        now = float(self._now())
        if not infos:
            return Decision(True, action, args, (), unguarded=True, t=now)
        entries = self.signals._entries
        lost = self.signals._lost
        reasons: list[Reason] = []
        bypassed: list[tuple[Reason, str]] = []
        for info in infos:
            for inst in self._instances_for(info, action, args):
                r = inst.node.ev(entries, lost, now)
                if r is not True:
                    rule = info.rule
                    reason = Reason(
                        rule.id, rule.title, rule.basis, rule.severity, inst.binding,
                        "unknown" if r is None else "not_satisfied",
                        tuple(inst.node.why_not(entries, lost, now)),
                    )
                    bid = (self.bypass.active_for(rule.id)
                           if self.bypass is not None and rule.bypassable and rule.severity != "critical" else None)
                    if bid is None:
                        reasons.append(reason)
                    else:
                        bypassed.append((reason, bid))
        d = Decision(not reasons, action, args, tuple(reasons), False, now, tuple(b for b, _ in bypassed))
        if d.allowed and bypassed and self.bypass is not None:
            self.bypass.used(d, [(b.rule_id, bid, "; ".join(c.text for c in b.clauses)) for b, bid in bypassed])
        return d

    def evaluate_all(self) -> list[RuleStatus]:
        """Every rule, for every concrete instance the engine knows (catalogue order).

        Incremental (issue 14, performance), with the verdicts of :meth:`evaluate_full`: a rule
        instance is evaluated again when one of the signals it reads differs from what its last
        evaluation saw — found by comparing the table's samples themselves (value and type,
        source, present or not), so no change can slip past a missed dirty flag — or that is
        not fresh now (older than ``stale_after_s`` or stamped that far in the future: evaluated
        at every call, its age is in the explanation; so a signal no longer refreshed makes its
        rules unknown at the first call past the bound, on time), and every instance when the set
        of devices with lost communication changed. A full evaluation runs on the first call,
        when the clock went back, and at least every ``full_evaluation_period_s`` of the clock
        (``parameters.full_evaluation_period_s``, default :data:`FULL_EVALUATION_PERIOD_S`);
        a full evaluation that finds a verdict the incremental one had not is counted in
        :attr:`incremental_mismatches` and logged as an error.
        """
        now = float(self._now())
        table = self.signals
        entries = table._entries
        lost = table._lost
        last = self._last
        if (last is None or now >= self._next_full or now < self._last_t or table is not self._table
                or lost != self._lost_seen):
            return self._full(now, entries, lost)
        self._last_t = now
        dirty = self._changed(entries, now)
        if dirty:
            slots = self._slots
            for i in dirty:
                info, inst = slots[i]
                assert inst is not None  # only instances read signals
                last[i] = self._status(info, inst, entries, lost, now)
        self.incremental_evaluations += 1
        return list(last)

    def evaluate_full(self) -> list[RuleStatus]:
        """Every rule instance evaluated now, none reused (what :meth:`evaluate_all` must equal)."""
        now = float(self._now())
        entries = self.signals._entries
        lost = self.signals._lost
        return [self._status(info, inst, entries, lost, now) for info, inst in self._slots]

    def _status(self, info: _RuleInfo, inst: _Instance | None, entries: Mapping[str, Sample],
                lost: Any, now: float) -> RuleStatus:
        rule = info.rule
        if inst is None:
            missing = sorted(info.placeholders)
            clause = Clause("", "no_instance", f"no configured ids for placeholder(s) {missing}")
            return RuleStatus(rule.id, rule.title, rule.severity, {}, "unknown", (clause,),
                              rule.on_tick, tuple(rule.guards))
        r = inst.node.ev(entries, lost, now)
        if r is True:
            return RuleStatus(rule.id, rule.title, rule.severity, inst.binding, "satisfied", (),
                              rule.on_tick, tuple(rule.guards))
        return RuleStatus(rule.id, rule.title, rule.severity, inst.binding,
                          "unknown" if r is None else "not_satisfied",
                          tuple(inst.node.why_not(entries, lost, now)), rule.on_tick, tuple(rule.guards))

    # ------------------------------------------------------------------ incremental evaluation
    def _reset_incremental(self) -> None:
        """Forget what the last evaluation saw (a rebound engine starts with a full evaluation)."""
        self._last = None
        self._last_t = -math.inf
        self._next_full = -math.inf
        self._table = None
        self._lost_seen = frozenset()
        self._seen = {}
        self.full_evaluations = 0
        self.incremental_evaluations = 0
        self.incremental_mismatches = 0

    def _changed(self, entries: Mapping[str, Sample], now: float) -> set[int]:
        """The slots to evaluate again: those reading a signal that differs from what was seen."""
        stale = self.stale_after_s
        seen = self._seen
        readers = self._readers
        dirty: set[int] = set()
        for name, was in seen.items():
            e = entries.get(name)
            if e is None:
                if was is None:
                    continue
                seen[name] = None
            else:
                v, t, src = e
                age = now - t
                fresh = -stale <= age <= stale
                if (fresh and was is not None and was[2] and src == was[1]
                        and (v is was[0] or (type(v) is type(was[0]) and v == was[0]))):
                    continue
                seen[name] = (v, src, fresh)
            dirty.update(readers[name])
        return dirty

    def _full(self, now: float, entries: Mapping[str, Sample], lost: Any) -> list[RuleStatus]:
        last = self._last
        if last is not None and self._table is self.signals and self._lost_seen == lost and now >= self._last_t:
            # the periodic full evaluation checks the incremental one: what it would have reused
            dirty = self._changed(entries, now)
            fresh = [self._status(info, inst, entries, lost, now) for info, inst in self._slots]
            for i, (old, new) in enumerate(zip(last, fresh, strict=True)):
                if i not in dirty and (old.state != new.state
                                       or [c.text for c in old.clauses] != [c.text for c in new.clauses]):
                    self.incremental_mismatches += 1
                    log.error("interlock %s %s: incremental verdict %s, full evaluation %s",
                              new.rule_id, dict(new.binding), old.state, new.state)
        else:
            fresh = [self._status(info, inst, entries, lost, now) for info, inst in self._slots]
        stale = self.stale_after_s
        seen = self._seen
        for name in self._readers:
            e = entries.get(name)
            seen[name] = None if e is None else (e[0], e[2], -stale <= now - e[1] <= stale)
        self._last, self._last_t, self._table = fresh, now, self.signals
        self._lost_seen = frozenset(lost)
        self._next_full = now + self.full_evaluation_period_s
        self.full_evaluations += 1
        return list(fresh)

    def trips(
        self,
        previous: Sequence[RuleStatus] | None,
        current: Sequence[RuleStatus] | None = None,
        active_actions: Iterable[str] | None = None,
    ) -> list[Trip]:
        """On-tick rules whose condition just stopped holding while relevant.

        Args:
            previous: the statuses of the previous tick (``None`` or empty on the first tick).
            current: this tick's statuses; :meth:`evaluate_all` is called if omitted.
            active_actions: actions in progress (e.g. ``{"arm.move_process"}``); a rule is
                relevant if it guards one of them. ``None`` = every on-tick rule is relevant.

        A rule instance trips when it is not satisfied now (false or unknown) and was
        satisfied in ``previous`` or is absent from it (first tick: unsafe counts). It does
        not trip again while it stays unsatisfied; recovery is the operator's decision.
        """
        if current is None:
            current = self.evaluate_all()
        prev = {s.key: s for s in previous or ()}
        active = None if active_actions is None else set(active_actions)
        out: list[Trip] = []
        for s in current:
            if s.on_tick is None or s.satisfied:
                continue
            if active is not None and not active.intersection(s.guards):
                continue
            p = prev.get(s.key)
            if p is None or p.satisfied:
                out.append(Trip(s.rule_id, s.on_tick, s.binding, s))
        return out

    # ------------------------------------------------------------------ internals
    def _known_bindings(self, info: _RuleInfo) -> list[dict[str, str]]:
        phs = info.placeholders
        domains: list[tuple[str, tuple[str, ...]]] = []
        if "other" in phs:
            domains.append(("door", self.hatch_doors))
        elif "door" in phs:
            domains.append(("door", self.door_ids))
        if "port" in phs or info.rule.scope == "each_glove_port":
            domains.append(("port", self.port_ids))
        if "rtp" in phs:
            domains.append(("rtp", self.rtp_ids))
        out = []
        for combo in itertools.product(*(d for _, d in domains)):
            args = dict(zip((n for n, _ in domains), combo, strict=True))
            out.append(self._bind(info, args, "evaluate_all"))
        return out

    def _bind(self, info: _RuleInfo, args: Mapping[str, str], action: str) -> dict[str, str]:
        binding: dict[str, str] = {}
        for ph in sorted(info.placeholders):
            if ph in args:
                binding[ph] = args[ph]
            elif ph == "other":
                door = args.get("door")
                if door is None:
                    raise ValueError(
                        f"{action}: rule {info.rule.id} needs argument 'door' (its {{other}} is derived "
                        "from {door})")
                other = self._other_door(door)
                if other is None:
                    raise ValueError(
                        f"{action}: rule {info.rule.id} cannot derive {{other}} from door {door!r}; "
                        f"hatch doors are {list(self.hatch_doors)} (or pass 'other')")
                binding["other"] = other
                binding.setdefault("door", door)
            else:
                raise ValueError(
                    f"{action}: rule {info.rule.id} needs argument {ph!r} (placeholder {{{ph}}})")
        if "door" in args and "other" in info.placeholders:
            binding["door"] = args["door"]
        if "port" in args and info.rule.scope == "each_glove_port":
            binding["port"] = args["port"]
        return binding

    def _other_door(self, door: str) -> str | None:
        a, b = self.hatch_doors
        if door == a:
            return b
        if door == b:
            return a
        return None

    def _instance(self, info: _RuleInfo, binding: dict[str, str]) -> _Instance:
        key = (info.rule.id, tuple(sorted(binding.items())))
        inst = self._cache.get(key)
        if inst is not None:
            return inst

        def fill(signal: str) -> str:
            return _PLACEHOLDER.sub(lambda m: binding[m.group(1)], signal)

        node = _compile(info.rule.when, fill, self._params, self.stale_after_s)
        inst = _Instance(info.rule, binding, node,
                         tuple(dict.fromkeys(fill(c.signal) for c in iter_comparisons(info.rule.when))))
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[key] = inst
        return inst

    def _instances_for(self, info: _RuleInfo, action: str, args: Mapping[str, str]) -> list[_Instance]:
        if not info.placeholders and info.rule.scope == "action":
            return info.instances
        if info.rule.scope == "each_glove_port" and "port" not in args:
            return [self._instance(info, self._bind(info, {**args, "port": p}, action))
                    for p in self.port_ids]
        return [self._instance(info, self._bind(info, args, action))]
