"""Interlock trips and the signed restart.

An on-tick rule (``RB-02`` abort VHP, ``RB-03`` protective stop, ...) that is violated while
one of its guarded actions is in progress trips once: its reaction is sent at once, the trip is
recorded, an alarm raised and a running batch held with every device made safe. Nothing
resumes by itself: the signed restart recovers the latched devices and resets the arm's
protective stop, step by step across ticks (ISO 10218-1 §5.4 [ISO10218-1]: resuming after a
protective stop is a deliberate action; the signed restart is that action, recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..interlocks import RuleStatus
from .port import NODES, Handle

if TYPE_CHECKING:
    from .core import Supervisor

TRIP_REACTIONS: dict[str, tuple[str | None, str | None]] = {
    "abort_vhp": ("vhp", "safe_state"), "protective_stop": ("arm", "protective_stop"),
    "hold_batch": (None, None)}
SAFE_ORDER = ("arm", "vhp", "autoclave", "isolator")
"""Safe-state order on a trip: stop motion first, then the process units."""
RESTART_TIMEOUT_S = 20.0
"""Wall seconds the signed restart waits for the devices' recoveries before holding again."""


class Trips:
    """On-tick interlock rules, trips, the safe state of the cell and the signed restart's steps."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.tripped: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._all_seen = False
        self._restart_step: tuple[str, list[Handle], float] | None = None
        self._safe_sent: list[Handle] = []
        """The safe_state commands of the last trip: a restart first waits until each node's state
        reflects its answer (over ROS the state lags the reply; a latch not yet seen is not recovered)."""
        self._restart_wait_from: float | None = None

    # ------------------------------------------------------------------ on-tick rules
    def active_actions(self) -> set[str]:
        """Guarded actions in progress (unknown counts as in progress)."""
        sup = self.sup
        act: set[str] = set()
        if sup.signal("arm.moving") is not False:
            act |= {"arm.move", "arm.move_process"}
        if sup.signal("arm.drives_enabled") is not False:
            act.add("arm.enable")
        if sup.active_phase and sup.phase_type(sup.active_phase) == "robot_task":
            act.add("arm.move_process")
        return act

    def on_tick_rules(self, statuses: Sequence[RuleStatus]) -> None:
        sup = self.sup
        if not self._all_seen:  # devices still coming up (lifecycle manager's job): nothing to trip yet
            sources = sup.signals.sources()
            self._all_seen = all(dev in sources for dev in sup.port.node_devices.values())
            if not self._all_seen:
                return
        active = self.active_actions()
        for s in statuses:
            if s.on_tick is None:
                continue
            relevant = bool(active.intersection(s.guards))
            if s.satisfied or not relevant:
                self.tripped.discard(s.key)
                continue
            if s.key in self.tripped:
                continue
            self.tripped.add(s.key)
            why = "; ".join(c.text for c in s.clauses)
            node, cmd = TRIP_REACTIONS.get(s.on_tick, (None, None))
            if node is not None and cmd is not None:
                sup.send(node, cmd, {"reason": f"{s.rule_id}: {why}"}, reason=f"interlock trip {s.rule_id}",
                         user="supervisor")
            self.trip(s.rule_id, s.title, why, s.on_tick)

    def trip(self, rule_id: str, title: str, why: str, reaction: str) -> None:
        sup = self.sup
        entry = {"t": sup.now(), "rule": rule_id, "title": title, "reason": why, "reaction": reaction,
                 "batch_state": sup.sm.state.value}
        sup.journal.trips.append(entry)
        sup.journal.audit("trip", "system", f"interlock.{rule_id}", why, entry)
        sup.process_alarms.raise_("CELL_INTERLOCK_TRIP", f"{rule_id} {title}: {why}")
        sup.hold_on_trip(f"interlock trip {rule_id}: {why}", source=rule_id)

    def all_safe(self, why: str) -> None:
        """Every device not already latched to its safe state, in SAFE_ORDER."""
        self._safe_sent = []
        for node in SAFE_ORDER:
            if not self.sup.port.latched(node):
                self._safe_sent.append(self.sup.send(node, "safe_state", {"reason": why[:200]}, reason=why[:200],
                                                     user="supervisor"))

    # ------------------------------------------------------------------ signed restart
    def drop_restart(self) -> None:
        """An abort/stop during Restarting drops its unfinished steps."""
        self._restart_step = None
        self._restart_wait_from = None

    def restart_ready(self, user: str) -> bool:
        """The signed restart's device steps, in order, across ticks: recover every latched node,
        then reset the arm's protective stop. True once all have been answered; a refusal or no
        answer within RESTART_TIMEOUT_S holds the batch again with the reason."""
        sup = self.sup
        if self._restart_step is None and self._safe_sent:
            # the trip's latches must be visible before we decide what to recover (bounded wait)
            t0 = self._restart_wait_from = self._restart_wait_from or sup.wall()
            pending = [h for h in self._safe_sent if not (h.done and sup.updated_since(h.node, h))]
            if pending and sup.wall() - t0 <= RESTART_TIMEOUT_S:
                return False
            self._safe_sent, self._restart_wait_from = [], None
        if self._restart_step is None:
            self.tripped.clear()  # re-arm the on-tick rules: a still-violated rule trips again
            self._restart_step = ("recover", [sup.recover(node, user, f"batch restart: {sup.held_reason}")
                                              for node in NODES if sup.port.latched(node)], sup.wall())
        while True:
            step, handles, t0 = self._restart_step
            failed = [h for h in handles if h.done and not h.accepted]
            if failed or (sup.wall() - t0 > RESTART_TIMEOUT_S and not all(h.done for h in handles)):
                why = "; ".join(f"{h.node}.{h.command} refused: {h.code}: {h.reason}" for h in failed) or (
                    f"no answer to {', '.join(f'{h.node}.{h.command}' for h in handles if not h.done)} "
                    f"within {RESTART_TIMEOUT_S:g} s")
                self._restart_step = None
                sup.hold(f"restart failed: {why}", trip=True, source="restart")
                return False
            if not all(h.done for h in handles):
                return False
            if step == "recover" and sup.signal("arm.protective_stop") is not False:
                sup.journal.audit("intervention", user, "arm.reset_protective_stop", "batch restart",
                                  {"node": "arm"})
                self._restart_step = ("reset", [sup.port.send("arm", "reset_protective_stop", {}, user=user,
                                                              reason="batch restart")], sup.wall())
                continue  # answered at once by an in-process cell; over ROS on a later tick
            self._restart_step = None
            return True

