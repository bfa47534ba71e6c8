"""One phase of a patient batch's process (issue 14): acquire, verify identity, command the process
equipment, release.

:class:`ProcessPhase` runs one phase of ``config/processes/<id>.yaml`` for one batch:

1. **acquire**: a manipulation phase files its request with the cell's arbiter (all its resources
   at once; the window's latest start and the batch's slack go with it) and waits, RUNNING, with
   the arbiter's reasons as its feedback, until it is granted. An incubation phase needs nothing
   more than the slot the batch holds from admission.
2. **identify** (COI-01): before the step touches a container, the container is read at its
   station by the scanner device (``scanner.place``/``scan``/``remove`` through the one command
   path, :meth:`PatientCell.read`) and the step is logged through the chain of identity; a failed
   read is re-read (COI-03: ``n_scan_retry``), then the phase fails (the batch holds); a mismatch
   (COI-30) fails the phase before its actuator is commanded, and the cell has held every batch
   the verdict names. A move into or out of the batch's incubator slot is the incubator's
   ``load`` / ``unload`` (its controller refuses a container of another COI: COI-20).
3. **work**: the process equipment the phase uses is commanded through the one command path
   (``sup.send``: the focused batch's user as actor, the device layer's hard interlocks, refusals in
   the batch's record) and the phase waits on its state and result: a weld (WLD: ``weld`` with the
   COIs read at the welder, so the welder's own WELD_COI_MISMATCH interlock stands even if the
   supervisor's check were bypassed), a spin (CFG: ``run`` of the site's first centrifuge
   program; not in a ``*_setup`` phase, which only loads it), a count (CC: ``count`` of the
   phase's sample), a seal (SLR in a closed phase). Each result goes into the batch's record
   (kind ``material``, action ``<unit>.result``); a refusal, a FAIL or no result within
   ``DEVICE_TIMEOUT_S`` fails the phase: that batch holds (batch-local, INT-03), with the
   supervisor's phase-failure alarm and trip entry; nothing resumes by itself. An incubation
   phase ends with the chamber's conditions in the record; a continuous T/CO2/RH excursion longer
   than the incubator's ``alarm_delay_s`` during it (INC-04) fails it. The phase lasts at least
   its planned duration, and as long as its equipment takes (the short process's planned minutes
   are shorter than a real spin or count).
4. **release**: everything it holds goes back to the arbiter at once; a phase stopped by a hold
   releases too (a batch-local fault stops other batches only through what it blocks: INT-03).
   A run in progress when the phase is stopped runs to its end on the unit (no device is made
   safe by a batch-local hold); a later command that finds the unit still busy waits for it.
"""

from __future__ import annotations

from typing import Any

import py_trees
from py_trees.common import Status

from aseptic_cell.coi import ContainerKind, CustodyEventType
from aseptic_cell.scheduling.arbiter import RequestState

E = CustodyEventType
STATION_OF = (("WLD", "WLD"), ("CFG", "CFG"), ("SEP", "SEP"), ("CC", "WS"), ("WS", "WS"), ("SLR", "SLR"),
              ("CRF", "CRF"), ("RTP", "RTP"), ("THAW", "THAW"))
DEVICE_TIMEOUT_S = 3600.0
"""Longest wait (sim s) for a unit's run to end and report, beyond which the phase fails
(engineering bound: the longest configured run, a 12-min spin, with margin)."""
CENTRIFUGE_LOAD_G = 250.0
"""Mass of the culture bag in the bucket (planning value); the cell balances it with a counterweight
of the same declared mass (an undeclared difference is the centrifuge's ``imbalance`` fault)."""
START = {"welder": "weld", "sealer": "seal", "centrifuge": "run", "counter": "count"}
BUSY = {"WELDER_BUSY", "SEALER_BUSY", "CENTRIFUGE_BUSY", "COUNTER_BUSY"}


def equipment_ops(ph: Any) -> list[str]:
    """The process-equipment units a phase commands, in order."""
    res, ops = ph.resources, []
    if "WLD" in res:
        ops.append("welder")
    if "CFG" in res and not ph.id.endswith("_setup"):
        ops.append("centrifuge")
    if "CC" in res:
        ops.append("counter")
    if "SLR" in res and not ph.open:
        ops.append("sealer")
    return ops


class ProcessPhase(py_trees.behaviour.Behaviour):
    """See the module docstring. ``phases``/``index``: the batch's run phases and this one's place."""

    def __init__(self, name: str, ctx: Any, cell: Any, ex: Any, phases: list[Any], index: int) -> None:
        super().__init__(name)
        self.ctx, self.cell, self.ex = ctx, cell, ex
        self.phases, self.index = phases, index
        self.ph = phases[index]
        self.ops = equipment_ops(self.ph)
        self.reason = ""
        self._reset()

    def _reset(self) -> None:
        self.rid: int | None = None
        self.t_work: float | None = None
        self.steps_done = False
        self.attempt = 1
        self.handles: dict[str, Any] = {}
        self.noted: set[str] = set()
        self.op_args: dict[str, Any] = {}
        self.need_unload = False
        self.op_i = 0
        self.op_stage = "start"
        self.op_handle: Any = None
        self.op_run_id = ""
        self.op_t0 = 0.0
        self.inc_t0: float | None = None
        self.inc_doors: Any = None
        self.weld_checked = False

    # ------------------------------------------------------------------ py_trees
    def initialise(self) -> None:
        self._reset()

    def terminate(self, new_status: Status) -> None:
        if self.rid is not None:
            self.cell.drop(self.rid)
            self.ex.requests.pop(self.ph.id, None)
        self.cell.open_now.pop(self.ex.batch_id, None)
        if new_status == Status.INVALID:
            self._reset()

    def fail(self, why: str) -> Status:
        self.reason = why
        self.feedback_message = why
        return Status.FAILURE

    def update(self) -> Status:
        ph, ex, now = self.ph, self.ex, self.ctx.now()
        if ph.kind.value != "incubation" and self.rid is None:
            latest = ex.process.latest_start(self.phases, self.index, ex.phase_ends)
            remaining = sum(p.duration for p in self.phases[self.index:])
            req = self.cell.arbiter.request(ex.batch_id, ph.id, ph.resources, now, open=ph.open,
                                            latest_start=latest, remaining=remaining,
                                            start_when_free=ph.start_when_free)
            self.rid = req.id
            ex.requests[ph.id] = req.id
        if self.rid is not None:
            req = self.cell.arbiter.requests[self.rid]
            if req.state is RequestState.WAITING:
                why = "; ".join(str(w) for w in self.cell.arbiter.why(req, now)) or "ranked behind others"
                self.feedback_message = f"waiting for {', '.join(sorted(req.needs))}: {why}"
                return Status.RUNNING
            if req.state is not RequestState.RUNNING:
                return self.fail(f"request {req.id} is {req.state.value}")
        if not self.steps_done:
            if ph.open and self.ctx.signal("isolator.particles.action_excursion") is True:
                # Annex 1 §9 [ANNEX1-2022] (IL-12): no container is opened in grade A while the
                # particle action excursion stands; the open step waits for it to end
                self.feedback_message = "waiting to open: grade A particle action excursion (IL-12)"
                return Status.RUNNING
            try:
                action, why = self._identity_steps()
            except ValueError as exc:  # the chain refused an event (CustodyError, GenealogyError): hold
                return self.fail(f"chain of identity: {exc}")
            if action == "WAIT":  # a read or a command whose answer has not come yet
                self.feedback_message = "waiting for the scanner / incubator"
                return Status.RUNNING
            if action == "RETRY":
                self.attempt += 1
                self.feedback_message = f"re-reading: {why}"
                return Status.RUNNING
            if action != "PROCEED":
                return self.fail(why)
            self.steps_done = True
            self.t_work = now
            if ph.open:
                self.cell.open_now[ex.batch_id] = now
            if ph.kind.value == "incubation":
                self.inc_t0, self.inc_doors = now, self.ctx.signal("incubator.door_events")
        assert self.t_work is not None
        st = self._equipment(now)
        if st is not None:
            return st
        left = ph.duration - (now - self.t_work)
        self.feedback_message = f"{max(left, 0.0):.0f} s left"
        if left > 0:
            return Status.RUNNING
        if ph.kind.value == "incubation":
            bad = self._incubation_record(now)
            if bad:
                return self.fail(bad)
        return self._finish()

    # ------------------------------------------------------------------ steps
    def _station(self) -> str:
        for res, station in STATION_OF:
            if res in self.ph.resources:
                return station
        return "WS"

    def _command(self, key: str, node: str, command: str, args: dict[str, Any]) -> tuple[str, str]:
        """One command through the one command path, sent once per phase run; WAIT until answered."""
        h = self.handles.get(key)
        if h is None:
            h = self.handles[key] = self.ctx.send(node, command, args,
                                                  reason=f"batch {self.ex.batch_id} phase {self.ph.id}")
        if not h.done:
            return "WAIT", ""
        if not h.accepted:
            self._refused(h)
            return "HOLD", f"{node}.{command} refused: {h.code}: {h.reason}"
        return "PROCEED", ""

    def _refused(self, h: Any) -> None:
        """A unit's refusal into the batch's own record (the cell's record has the device event)."""
        if h.code != "INTERLOCK":  # (an interlock refusal is recorded by the supervisor's send)
            self.ex.journal.refusal(self.ex.batch_user or "system", h.node, h.command, h.args, h.code, h.reason,
                                    source="device")

    def _door_note(self, key: str, container: str) -> None:
        h = self.handles.get(key)
        payload = h.payload if h is not None else {}
        self.ex.journal.audit("note", "system", f"incubator.{key}", f"{key} {container} (slot {self.ex.slot})",
                              {"slot": self.ex.slot, "container": container, "door_event": payload.get("door_event"),
                               "phase": self.ph.id})

    def _identity_steps(self) -> tuple[str, str]:
        """The chain-of-identity steps of this phase, before its actuator moves."""
        ph, ex, cell = self.ph, self.ex, self.cell
        b = ex.batch_id
        aph, bag = f"APH-{b}", f"BAG-{b}"
        g = cell.coi.genealogy
        kind = ph.kind.value
        if ph.id == "receipt":
            if g.get(aph) is None:
                return cell.receive(ex, aph, "RTP", attempt=self.attempt)
            return "PROCEED", ""
        product = bag if g.get(bag) is not None else aph
        c = g.get(product)
        here = c.location if c is not None else "WS"
        if kind == "incubation":
            if here != ex.slot:
                act, why = cell.scan_step(ex, E.INCUBATOR_IN, product, here, ex.slot, equipment="INC",
                                          extra={"door_open_s": cell.door_access_s()}, attempt=self.attempt)
                if act != "PROCEED":
                    return act, why
            act, why = self._command("load", "incubator", "load",
                                     {"slot": cell.slot_number(ex.slot), "container_id": product, "coi": ex.coi})
            if act == "PROCEED" and "load" not in self.noted:
                self.noted.add("load")
                self._door_note("load", product)
            return act, why
        station = self._station()
        if here != station:  # out of the slot or over from the last station
            event = E.INCUBATOR_OUT if here == ex.slot else E.MOVE
            extra = {"door_open_s": cell.door_access_s()} if event is E.INCUBATOR_OUT else {}
            act, why = cell.scan_step(ex, event, product, here, station, equipment="INC" if event is
                                      E.INCUBATOR_OUT else "ARM", extra=extra, attempt=self.attempt)
            if act != "PROCEED":
                return act, why
            self.need_unload = event is E.INCUBATOR_OUT
        if self.need_unload:
            act, why = self._command("unload", "incubator", "unload",
                                     {"slot": cell.slot_number(ex.slot), "container_id": product})
            if act != "PROCEED":
                return act, why
            self.need_unload = False
            self._door_note("unload", product)
        if ph.id == "activation" and g.get(bag) is None:  # the culture bag, a child of the apheresis bag
            return cell.register(ex, bag, station, ContainerKind.CULTURE_BAG, [aph], attempt=self.attempt)
        spin = "centrifuge" in self.ops
        if "WLD" in ph.resources and not self.weld_checked:  # SEG-03: a weld joins only containers of one COI
            media = f"MEDIA-{b}-{ph.id}"
            if g.get(media) is None:
                act, why = cell.register(ex, media, station, ContainerKind.TRANSFER_BAG, [product],
                                         attempt=self.attempt)
                if act != "PROCEED":
                    return act, why
            act, why = cell.weld(ex, product, media, station, attempt=self.attempt)
            if act != "PROCEED" or not spin:
                return act, why
            # both ends checked: over ROS the spin's read answers a tick later, and these steps run
            # again from the top then; re-checking the weld would read again forever (graph only)
            self.weld_checked = True
        if spin:
            p = self.cell.centrifuge_program_config()
            return cell.scan_step(ex, E.CENTRIFUGE_RUN, product, station, equipment="CFG",
                                  extra={"program": p.id, "rcf_g": p.rcf_g, "time_s": p.duration_s},
                                  attempt=self.attempt)
        if ph.open and "CC" in ph.resources:
            return cell.scan_step(ex, E.SAMPLE, product, station,
                                  extra={"test_ordered": "count/viability", "sample_id": self._sample_id()},
                                  attempt=self.attempt)
        if ph.id == "fill":
            return cell.scan_step(ex, E.FILL, product, station, extra={"bag_count": 1, "volumes_ml": [50.0]},
                                  attempt=self.attempt)
        if ph.open:
            return cell.scan_step(ex, E.OPEN_START, product, station, attempt=self.attempt)
        if "CRF" in ph.resources and ph.id == "freeze":
            return cell.scan_step(ex, E.CRYO_START, product, station, equipment="CRF",
                                  extra={"crf_program": "CRF-SIM"}, attempt=self.attempt)
        if "sealer" in self.ops:  # SEAL logged with the seal's quality after the sealer ran
            return cell.check_step(ex, product, station, attempt=self.attempt)
        return "PROCEED", ""

    def _product(self) -> str:
        b = self.ex.batch_id
        return f"BAG-{b}" if self.cell.coi.genealogy.get(f"BAG-{b}") is not None else f"APH-{b}"

    def _sample_id(self) -> str:
        return f"S-{self.ex.batch_id}-{self.ph.id}"

    # ------------------------------------------------------------------ equipment
    def _args(self, node: str) -> dict[str, Any]:
        product = self._product()
        if node == "welder":
            (a, coi_a), (b, coi_b) = self.cell.connected[self.ex.batch_id]
            return {"container_a": a, "coi_a": coi_a, "container_b": b, "coi_b": coi_b}
        if node == "centrifuge":
            return {"program": self.cell.centrifuge_program_config().id, "container_id": product,
                    "load_g": CENTRIFUGE_LOAD_G, "counterweight_g": CENTRIFUGE_LOAD_G}
        if node == "counter":
            return {"sample_id": self._sample_id()}
        return {"container_id": product}

    def _equipment(self, now: float) -> Status | None:
        """Command each unit of the phase in turn and wait on its result. None: all done."""
        ctx, ex = self.ctx, self.ex
        while self.op_i < len(self.ops):
            node = self.ops[self.op_i]
            if self.op_stage == "start":
                args = self._args(node)
                self.op_handle = ctx.send(node, START[node], args, reason=f"batch {ex.batch_id} phase {self.ph.id}")
                self.op_stage, self.op_t0, self.op_args = "starting", now, args
            h = self.op_handle
            if self.op_stage == "starting":
                if not h.done:
                    return Status.RUNNING
                if not h.accepted:
                    if h.code in BUSY and now - self.op_t0 < DEVICE_TIMEOUT_S:  # a stopped batch's run ends first
                        self.op_stage = "start"
                        self.feedback_message = f"{node} busy: waiting"
                        return Status.RUNNING
                    self._refused(h)
                    return self.fail(f"{node}.{START[node]} refused: {h.code}: {h.reason}")
                self.op_run_id = str((h.payload or {}).get("run_id", ""))
                ex.journal.audit("command", ex.batch_user or "system", f"{node}.{START[node]}",
                                 f"phase {self.ph.id}", {"node": node, "args": self.op_args, "run_id": self.op_run_id,
                                                         "phase": self.ph.id})
                self.op_stage, self.op_t0 = "running", now
                return Status.RUNNING  # the unit runs on sim time: look again next tick
            if self.op_stage == "running":
                if not ctx.updated_since(node, h):
                    return Status.RUNNING
                busy, last = ctx.signal(f"{node}.busy"), ctx.signal(f"{node}.last_result")
                if busy is False and last in ("PASS", "FAIL"):
                    self.op_handle = h = ctx.send(node, "get_result", {}, reason=f"phase {self.ph.id}")
                    self.op_stage = "result"
                else:
                    if now - self.op_t0 > DEVICE_TIMEOUT_S:
                        return self.fail(f"{node} run {self.op_run_id}: no result within {DEVICE_TIMEOUT_S:g} s")
                    self.feedback_message = f"{node} {ctx.signal(f'{node}.phase') or 'running'}"
                    return Status.RUNNING
            if self.op_stage == "result":
                if not h.done:
                    return Status.RUNNING
                report = (h.payload or {}).get("result") if h.accepted else None
                if not isinstance(report, dict) or report.get("run_id") != self.op_run_id:
                    if now - self.op_t0 > DEVICE_TIMEOUT_S:
                        return self.fail(f"{node} run {self.op_run_id}: no result ({h.code}: {h.reason})")
                    self.op_stage = "running"  # the signals showed an earlier run's end: wait for ours
                    return Status.RUNNING
                self._record_result(node, report)
                if report.get("result") == "PASS" and node == "welder":
                    self.cell.weld_done(ex, report)
                elif report.get("result") == "PASS" and node == "sealer":
                    self.cell.record_step(ex, E.SEAL, equipment="SLR",
                                          extra={"quality": "PASS", "score": report.get("score"),
                                                 "run_id": report.get("run_id")})
                if report.get("result") != "PASS":
                    reasons = "; ".join(str(r) for r in report.get("reasons", []) or []) or "no reason given"
                    return self.fail(f"{node} run {self.op_run_id} {report.get('result')}: {reasons}")
                self.op_i += 1
                self.op_stage = "start"
        return None

    def _record_result(self, node: str, report: dict[str, Any]) -> None:
        ex = self.ex
        keep = {k: v for k, v in report.items() if isinstance(v, (str, int, float, bool, list)) or v is None}
        text = f"{node} run {report.get('run_id')} {report.get('result')} in phase {self.ph.id}"
        if node == "counter" and report.get("result") == "PASS":
            text += (f": {float(report['viable_per_ml']):.3g} viable cells/mL, "
                     f"viability {float(report['viability_pct']):.1f} %")
        ex.journal.audit("material", "system", f"{node}.result", text, {"phase": self.ph.id, "unit": node, **keep})
        ex.results[f"{node}.{self.ph.id}"] = keep

    def _incubation_record(self, now: float) -> str:
        """The chamber's conditions over this incubation into the batch's record; a reason to fail
        when a continuous excursion longer than the incubator's alarm delay overlapped it (INC-04)."""
        ex, ctx, cell = self.ex, self.ctx, self.cell
        t0 = self.inc_t0 if self.inc_t0 is not None else now
        doors = ctx.signal("incubator.door_events")
        long_exc = cell.incubator_excursions(t0, now)
        data = {"phase": self.ph.id, "slot": ex.slot, "start": t0, "end": now,
                "temp_c": ctx.signal("incubator.temp_c"), "co2_pct": ctx.signal("incubator.co2_pct"),
                "rh_pct": ctx.signal("incubator.rh_pct"),
                "door_events": (doors - self.inc_doors if isinstance(doors, float) and isinstance(self.inc_doors, float)
                                else None),
                "excursions_over_alarm_delay": [[a, b] for a, b in long_exc]}
        ex.journal.audit("environment", "system", "incubator.conditions",
                         f"incubation {self.ph.id} in slot {ex.slot}", data)
        if not long_exc:
            return ""
        why = (f"INC-04: incubator out of its T/CO2/RH band for longer than its alarm delay during {self.ph.id} "
               f"(slot {ex.slot}): {long_exc}")
        ex.journal.audit("deviation", "system", "deviation.raise", why,
                         {"rule": "INC-04", "code": "INCUBATOR_EXCURSION", "phase": self.ph.id, "slot": ex.slot,
                          "windows": [[a, b] for a, b in long_exc]})
        return why

    def _finish(self) -> Status:
        ph, ex, cell = self.ph, self.ex, self.cell
        if ph.open:
            g = cell.coi.genealogy
            product = f"BAG-{ex.batch_id}" if g.get(f"BAG-{ex.batch_id}") is not None else f"APH-{ex.batch_id}"
            try:
                cell.coi.log.append(E.OPEN_END, batch_id=ex.batch_id, coi_id=ex.coi, actor="system",
                                    container_ids=[product], extra={"particle_counts": "within grade A limits"})
            except Exception as exc:  # noqa: BLE001 - an append refused: the phase fails, the batch holds
                return self.fail(f"OPEN_END not recorded: {exc}")
            cell.open_now.pop(ex.batch_id, None)
        if self.rid is not None:
            cell.drop(self.rid)
            ex.requests.pop(ph.id, None)
            self.rid = None
        ex.phase_ends[ph.id] = self.ctx.now()
        return Status.SUCCESS
