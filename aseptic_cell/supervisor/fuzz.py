"""Random operator commands and device faults against the in-process cell, with the safety
invariants checked on every tick: shared by the hypothesis stateful test
(tests/unit/test_supervisor_stateful.py) and the soak script (benchmarks/soak.py).

A random sequence of a few steps from a fresh cell never gets past the first phase of a
batch (a whole batch is hours of sim time). So sequences start from **snapshots**: one batch
of the master recipe is run once to completion on the in-process cell and the whole cell +
supervisor + monitor is captured at every change of (recipe phase, VHP phase, autoclave
phase, robot moving) and every ``every_s`` within a phase (:class:`PhaseSnapshots`); each
sequence starts from a copy of one of them (:meth:`FuzzCell.clone`), so the random commands
and faults hit the VHP dwell and aeration, the autoclave plateau and unload, the RTP transfer,
the robot task, incubation and the end glove tests. :class:`Coverage` counts, on every
invariant check, the recipe phase and every device state the invariants name.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import types
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..auth import UserDirectory
from ..config import CellConfig
from .invariants import InvariantMonitor
from .runner import InProcessRun

OPERATOR_COMMANDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("isolator", "open_door", {"door": "A"}, "op1"), ("isolator", "open_door", {"door": "B"}, "op1"),
    ("isolator", "close_door", {"door": "A"}, "op1"), ("isolator", "close_door", {"door": "B"}, "op1"),
    ("isolator", "start_hatch_decon", {"user": "op1"}, "op1"),
    ("isolator", "dock_beta", {"rtp": "RTP1", "beta_id": "BETA-PATIENT-BAG", "sterile_status": "sterile"}, "op1"),
    ("isolator", "dock_beta", {"rtp": "RTP1", "beta_id": "BX", "sterile_status": "sterile"}, "op1"),
    ("isolator", "lock_beta", {"rtp": "RTP1"}, "op1"), ("isolator", "unlock_beta", {"rtp": "RTP1"}, "op1"),
    ("isolator", "undock_beta", {"rtp": "RTP1"}, "op1"), ("isolator", "open_alpha", {"rtp": "RTP1"}, "op1"),
    ("isolator", "close_alpha", {"rtp": "RTP1"}, "op1"), ("isolator", "use_glove", {"port": "GP1"}, "op1"),
    ("isolator", "release_glove", {"port": "GP1"}, "op1"), ("isolator", "extend_glove", {"port": "GP2"}, "op1"),
    ("isolator", "start_leak_test", {}, "op1"), ("isolator", "start_glove_test", {"port": "GP1", "user": "op1"}, "op1"),
    ("vhp", "start_cycle", {"cycle_id": "VHP-ISO-SHORT", "operator": "op1"}, "op1"),
    ("vhp", "abort", {"user": "op1", "reason": "fuzz"}, "op1"),
    ("autoclave", "open_door", {"side": "load"}, "op1"), ("autoclave", "close_door", {"side": "load"}, "op1"),
    ("autoclave", "open_door", {"side": "unload"}, "op1"), ("autoclave", "close_door", {"side": "unload"}, "op1"),
    ("autoclave", "start_program", {"program_id": "P121-15", "load_id": "L"}, "op1"),
    ("autoclave", "override_unload", {"user": "op1", "reason": "fuzz"}, "op1"),
    ("arm", "enable_drives", {}, "sup1"), ("arm", "disable_drives", {}, "op1"),
    ("arm", "move_to_pose", {"pose": "decon"}, "sup1"), ("arm", "move_to_pose", {"pose": "park"}, "sup1"),
    ("arm", "move_to_pose", {"pose": "rtp_pick"}, "sup1"), ("arm", "reset_protective_stop", {}, "sup1"),
]
BATCH_COMMANDS: list[tuple[str, str]] = [
    ("run", "op1"), ("hold", "op1"), ("restart", "sup1"), ("pause", "op1"), ("resume", "op1"), ("stop", "sup1"),
    ("abort", "qa1"), ("reset", "sup1"), ("restart", "op1"),
    # bypass management: a bypassable row (IL-12), critical rows (IL-01, IL-08) that must be refused,
    # the second person's approval, a self-approval (refused), removal
    ("bypass_request:IL-12", "sup1"), ("bypass_request:IL-01", "sup1"), ("bypass_request:IL-08", "sup1"),
    ("bypass_approve", "qa1"), ("bypass_approve", "sup1"), ("bypass_remove", "sup1"),
]
FAULTS: list[tuple[str, str]] = [
    ("ISO1", "glove_breach:GP1"), ("AC1", "steam_failure"), ("ISO1", "particle_monitor_failure"),
    ("ISO1", "fan_failure"), ("VHP1", "injector_failure"), ("ARM1", "comm_loss"), ("ISO1", "comm_loss"),
    ("ISO1", "particle_source"),  # a contamination source: grade-A action excursions (EM holds)
]
PASSWORDS = {"op1": "op1-demo-2026", "sup1": "sup1-demo-2026", "qa1": "qa1-demo-2026"}


class FastSignUsers(UserDirectory):
    """The real directory (roles, signatures, meanings), with each user's PBKDF2 verification
    done once and remembered: for fuzzing only, never in the product."""

    _memo: dict[tuple[str, str], Any] = {}

    def authenticate(self, user_id: str, password: str) -> Any:
        key = (user_id, password)
        if key not in self._memo:
            self._memo[key] = super().authenticate(user_id, password)
        return self._memo[key]


def _copy_function(f: types.FunctionType, memo: dict[int, Any]) -> types.FunctionType:
    """A closure over objects of the copied graph (``lambda: self.batch_id``) must see the
    copies, not the originals: copy its cells; a plain function stays shared."""
    if not f.__closure__:
        return f
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__,
                           tuple(types.CellType(copy.deepcopy(c.cell_contents, memo)) for c in f.__closure__))
    g.__kwdefaults__ = f.__kwdefaults__
    return g


def _drop_generator(g: Any, memo: dict[int, Any]) -> None:
    """py_trees keeps an unused ``iterator`` generator per behaviour (ticks build their own)."""
    return None


_COPY_LOCK = threading.Lock()


def _keep(x: Any, memo: dict[int, Any]) -> Any:
    return x


def _keep_model(self: Any, memo: dict[int, Any] | None = None) -> Any:
    return self


def deep_clone(obj: Any, shared: list[Any]) -> Any:
    """``copy.deepcopy`` of a whole in-process cell + supervisor: ``shared`` objects (the
    collision scene, the user directory, compiled rules: immutable or not part of the state),
    configuration models (pydantic: never mutated; changes go through ``model_copy``), UUIDs
    and py_trees loggers are kept, closures are copied, locks are new. For fuzzing only: the
    copy dispatch is patched while the lock is held."""
    import uuid

    import py_trees
    import pydantic

    d: Any = copy._deepcopy_dispatch  # type: ignore[attr-defined]
    patched: dict[Any, Any] = {types.FunctionType: _copy_function, types.GeneratorType: _drop_generator,
                               uuid.UUID: _keep, py_trees.logging.Logger: _keep}
    with _COPY_LOCK:
        saved = {k: d.get(k) for k in patched}
        model_copy = pydantic.BaseModel.__deepcopy__
        d.update(patched)
        pydantic.BaseModel.__deepcopy__ = _keep_model  # type: ignore[method-assign]
        memo: dict[int, Any] = {id(o): o for o in shared}
        try:
            for lock in _locks(obj):
                memo[id(lock)] = threading.RLock()
            return copy.deepcopy(obj, memo)
        finally:
            pydantic.BaseModel.__deepcopy__ = model_copy  # type: ignore[method-assign]
            for k, v in saved.items():
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = v


def _locks(f: Any) -> list[Any]:
    sup = getattr(f, "sup", None)
    return [x for x in (getattr(getattr(sup, "alarms", None), "_lock", None),) if x is not None]


class Coverage:
    """Per-phase and per-device-state counts of invariant checks (one count per check)."""

    def __init__(self) -> None:
        self.phases: Counter[str] = Counter()
        self.states: Counter[str] = Counter()
        self.start_phases: Counter[str] = Counter()

    def count(self, f: FuzzCell) -> None:
        sup, c = f.sup, f.cell
        self.phases[(sup.active_phase or f"<{sup.sm.state.value}>").rsplit("/", 1)[-1]] += 1
        iso, vhp, ac, arm = (c.sensors(n) for n in ("isolator", "vhp", "autoclave", "arm"))
        st = self.states
        st[f"vhp.phase={vhp.get('phase')}"] += 1
        st[f"autoclave.phase={ac.get('phase')}"] += 1
        st[f"isolator.decon_status={iso.get('decon_status')}"] += 1
        st[f"batch={sup.sm.state.value}"] += 1
        ppm = max(float(vhp.get("h2o2_ppm") or 0.0), float(vhp.get("h2o2_ppm_b") or 0.0))
        hatch_open = iso.get("hatch.door_A") != "closed" or iso.get("hatch.door_B") != "closed"
        bp = getattr(getattr(sup, "operator", None), "bypasses", None)
        for name, on in (("hatch door open", hatch_open),
                         ("bypass active", bool(bp is not None and bp.active())),
                         ("RTP alpha open", not iso.get("rtp.RTP1.alpha_closed")),
                         ("robot moving", bool(arm.get("moving"))),
                         ("autoclave clean-side door open", not ac.get("unload_door_closed")),
                         ("H2O2 >= release limit", ppm >= f.mon.release_ppm),
                         ("particle action excursion", bool(iso.get("particles.action_excursion")))):
            if on:
                st[name] += 1

    def merge(self, other: Coverage) -> None:
        self.phases.update(other.phases)
        self.states.update(other.states)
        self.start_phases.update(other.start_phases)

    def table(self) -> str:
        starts: Counter[str] = Counter()
        for label, n in self.start_phases.items():  # "PH-VHP/VHP:AERATE", "PH-RTP+EM" -> the recipe phase
            starts[label.split("/", 1)[0].split("+", 1)[0]] += n
        rows = ["per-phase coverage (invariant checks; sequences started there):"]
        rows += [f"  {k:28s} {v:9d} {starts.get(k, 0):7d}" for k, v in sorted(self.phases.items())]
        rows += ["device states (invariant checks):"]
        rows += [f"  {k:44s} {v:9d}" for k, v in sorted(self.states.items())]
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"phases": dict(self.phases), "start_phases": dict(self.start_phases), "states": dict(self.states)}


def shared_parts(sup: Any, *fixed: Any) -> list[Any]:
    """What a copy of a fuzz cell shares with it instead of copying: ``fixed`` (the configuration,
    the collision scene, the users) and the supervisor's compiled alarm conditions (keyed by their
    leaves' ids) and interlock rules, which are immutable (the engine's signal table and
    everything else is copied)."""
    pa, eng = getattr(sup, "process_alarms", None), getattr(sup, "engine", None)
    return [*fixed, *getattr(pa, "_conds", {}).values(), *getattr(pa, "_design", {}).values(),
            *getattr(eng, "_rules", ()), *getattr(eng, "_by_action", {}).values(),
            *getattr(eng, "_cache", {}).values()]


@contextlib.contextmanager
def detached(cell: Any) -> Iterator[None]:
    """While a fuzz cell is copied or frozen: its coverage counter is not part of the copy (the
    copy counts into its own) and its bypass list is attached to the engine; restored after."""
    keep = cell.coverage
    cell.coverage = None
    cell._attach()
    try:
        yield
    finally:
        cell.coverage = keep


class FuzzCell:
    """One sequence: cell + supervisor + invariant monitor (fresh, or a copy of a snapshot)."""

    _engines: dict[int, Any] = {}

    def __init__(self, cfg: CellConfig, users: Any, *, tick_s: float = 2.0, coverage: Coverage | None = None) -> None:
        from ..interlocks import InterlockEngine

        engine = self._engines.get(id(cfg))
        if engine is None:
            engine = self._engines[id(cfg)] = InterlockEngine.from_config(cfg, lambda: 0.0)
        self.cfg, self.users = cfg, users
        self.run = InProcessRun(cfg, tick_s=tick_s, users=users, check_mode="samples", engine=engine)
        self.sup, self.cell = self.run.sup, self.run.cell
        self.mon = InvariantMonitor(self.cell, self.sup)
        self.coverage = coverage
        self.mon.check()

    def _shared(self) -> list[Any]:
        return shared_parts(self.sup, self.cfg, self.cell.scene, self.users)

    def clone(self, coverage: Coverage | None = None) -> FuzzCell:
        """An independent copy of this cell, supervisor and monitor (same sim time, same batch
        state, same device states), counting into ``coverage``."""
        with detached(self):
            twin: FuzzCell = deep_clone(self, self._shared())
        twin.coverage = coverage
        return twin

    def freeze(self) -> bytes:
        """This cell, supervisor and monitor as bytes (:mod:`.fuzz_pickle`; same sharing as
        :meth:`clone`): :meth:`thaw` makes an independent copy at a fraction of a deepcopy's cost."""
        from .fuzz_pickle import freeze

        with detached(self):
            return freeze(self, self._shared())

    @staticmethod
    def thaw(data: bytes, coverage: Coverage | None = None) -> FuzzCell:
        from .fuzz_pickle import thaw

        twin: FuzzCell = thaw(data)
        twin.coverage = coverage
        return twin

    def _checked(self) -> None:
        self.mon.check()
        if self.coverage is not None:
            self.coverage.count(self)

    def operate(self, i: int) -> None:
        node, cmd, args, user = OPERATOR_COMMANDS[i % len(OPERATOR_COMMANDS)]
        self._attach()
        self.sup.operate(node, cmd, dict(args), user, "fuzz")
        self._checked()

    def batch(self, i: int) -> None:
        cmd, user = BATCH_COMMANDS[i % len(BATCH_COMMANDS)]
        self._attach()
        if cmd == "run":
            self.sup.run_batch("CART-TRANSDUCTION", "B-FUZZ", user)
        elif cmd.startswith("bypass_"):
            self._bypass(cmd, user)
        else:
            self.sup.batch_command(cmd, user, PASSWORDS.get(user, ""), "", "fuzz")
        self._checked()

    def _bypass(self, cmd: str, user: str) -> None:
        bp = self._bp
        if bp is None:  # no bypass management in this supervisor
            return
        pw = PASSWORDS.get(user, "")
        if cmd.startswith("bypass_request:"):
            bp.request(cmd.split(":", 1)[1], "fuzz: portable counter at the same location", 600.0, user,
                       password=pw, meaning="responsibility")
            return
        open_ = [b for b in bp.items.values() if b.state in ("REQUESTED", "ACTIVE")]
        if not open_:
            return
        if cmd == "bypass_approve":
            bp.approve(open_[-1].id, user, password=pw, meaning="approval", reason="fuzz approval")
        else:
            bp.remove(open_[-1].id, user, "fuzz")

    @property
    def _bp(self) -> Any:
        return getattr(getattr(self.sup, "operator", None), "bypasses", None)

    def _attach(self) -> None:
        """The interlock engine is shared by every FuzzCell (compiled once) but its bypass source
        is one supervisor's: point it at this one's before this cell acts."""
        bp = self._bp
        if bp is not None:
            self.sup.engine.bypass = bp

    def fault(self, i: int, clear: bool = False) -> None:
        dev, fault = FAULTS[i % len(FAULTS)]
        if clear:
            self.cell.clear_fault(dev, fault)
        else:
            self.cell.inject_fault(dev, fault)

    def advance(self, seconds: float) -> None:
        self._attach()
        end = self.run.now() + seconds
        while self.run.now() < end - 1e-9:
            self.run.tick_once()
            self._checked()

    def key(self) -> tuple[Any, ...]:
        """What a snapshot boundary is: recipe phase, VHP phase, autoclave state, robot moving."""
        vhp, ac, iso = self.cell.sensors("vhp"), self.cell.sensors("autoclave"), self.cell.sensors("isolator")
        return (self.sup.active_phase, vhp.get("phase"), ac.get("phase"), bool(self.cell.sim.arm.moving),
                bool(ac.get("unload_door_closed")), bool(iso.get("rtp.RTP1.alpha_closed")))

    def phase_label(self) -> str:
        """The recipe phase, with the VHP unit's and the autoclave's own phase while they run
        (``PH-VHP/VHP:AERATE``, ``PH-AC-TRANSFER/AC:PLATEAU``)."""
        label = (self.sup.active_phase or f"<{self.sup.sm.state.value}>").rsplit("/", 1)[-1]
        for tag, node in (("VHP", "vhp"), ("AC", "autoclave")):
            ph = self.cell.sensors(node).get("phase")
            if ph not in (None, "IDLE", "COMPLETE", "FAILED"):
                label += f"/{tag}:{ph}"
        if not self.cell.sensors("autoclave").get("unload_door_closed"):
            label += "/clean-side door open"
        return label

    @property
    def violations(self) -> list[str]:
        return self.mon.violations


class PhaseSnapshots:
    """Snapshots of one whole batch of ``recipe_id`` (see the module docstring), built once per
    configuration object: index 0 is the fresh cell before the batch starts."""

    _cache: dict[tuple[int, str, float], PhaseSnapshots] = {}

    def __init__(self, cfg: CellConfig, users: Any, recipe_id: str = "CART-TRANSDUCTION", *,
                 every_s: float = 1200.0, tick_s: float = 2.0, build_tick_s: float = 10.0) -> None:
        self.tick_s = tick_s
        f = FuzzCell(cfg, users, tick_s=build_tick_s)  # coarse ticks while building (the runner
        # ticks at most every 1 s while the robot moves); every copy runs at ``tick_s``
        self.snaps: list[bytes] = [f.freeze()]
        """Each snapshot frozen (:meth:`FuzzCell.freeze`); :meth:`start` thaws a copy."""
        self.labels: list[str] = ["<fresh>"]
        out = f.sup.run_batch(recipe_id, "B-FUZZ", "op1")
        if not out.accepted:
            raise RuntimeError(f"snapshot batch refused: {out}")
        last: tuple[Any, ...] | None = None
        since = f.run.now()
        em_done: set[str] = set()
        while not f.sup.sm.state.final and f.sup.sm.state.value != "Held":
            key = f.key()
            if key != last or f.run.now() - since >= every_s:
                self.snaps.append(f.freeze())
                self.labels.append(f.phase_label())
                since = f.run.now()
                last = key
                if f.mon._open_product_phase() and key[0] not in em_done:
                    em_done.add(key[0])
                    self._add_em_variant(f)
            f.run.tick_once()
            f.mon.check()
        if f.sup.sm.state.value != "Complete" or f.violations:
            raise RuntimeError(f"snapshot batch ended {f.sup.sm.state.value} ({f.sup.held_reason}) {f.violations}")
        self.snaps.append(f.freeze())
        self.labels.append(f.phase_label())

    def _add_em_variant(self, f: FuzzCell) -> None:
        """A copy of an open-product phase with a contamination source just injected, advanced
        to shortly before the counter's sample ends: sequences from it see the action excursion
        (and the EM hold) arrive within a few steps."""
        v = FuzzCell.thaw(f.freeze())
        v.cell.inject_fault("ISO1", "particle_source")
        sample_s = float(getattr(f.cfg.layout.isolator.particles, "sample_time_s", 60.0) or 60.0)
        end = v.run.now() + max(0.0, sample_s - 8.0)
        while v.run.now() < end and not v.cell.sensors("isolator").get("particles.action_excursion"):
            v.run.tick_once()
            v.mon.check()
        self.snaps.append(v.freeze())
        self.labels.append(v.phase_label() + "+EM")

    @classmethod
    def of(cls, cfg: CellConfig, users: Any, recipe_id: str = "CART-TRANSDUCTION", every_s: float = 1200.0
           ) -> PhaseSnapshots:
        key = (id(cfg), recipe_id, every_s)
        if key not in cls._cache:
            cls._cache[key] = cls(cfg, users, recipe_id, every_s=every_s)
        return cls._cache[key]

    def __len__(self) -> int:
        return len(self.snaps)

    @property
    def groups(self) -> list[list[int]]:
        """Snapshot indices grouped by their phase label (in batch order)."""
        out: dict[str, list[int]] = {}
        for i, label in enumerate(self.labels):
            out.setdefault(label, []).append(i)
        return list(out.values())

    def start(self, i: int, coverage: Coverage | None = None) -> FuzzCell:
        """A new sequence from the ``i``-th start: consecutive ``i`` go round the phase labels
        (so a short phase, e.g. the 4 s RTP transfer, gets as many starts as the 3 h VHP cycle),
        then round the snapshots of that phase."""
        groups = self.groups
        group = groups[i % len(groups)]
        k = group[(i // len(groups)) % len(group)]
        if coverage is not None:
            coverage.start_phases[self.labels[k]] += 1
        twin = FuzzCell.thaw(self.snaps[k], coverage)
        twin.run.tick_s = self.tick_s
        return twin
