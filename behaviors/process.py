"""One phase of a patient batch's process (issue 14): acquire, verify identity, work, release.

:class:`ProcessPhase` runs one phase of ``config/processes/<id>.yaml`` for one batch:

1. **acquire**: a manipulation phase files its request with the cell's arbiter (all its resources
   at once; the window's latest start and the batch's slack go with it) and waits, RUNNING, with
   the arbiter's reasons as its feedback, until it is granted. An incubation phase needs nothing
   more than the slot the batch holds from admission.
2. **identify** (COI-01): before the step touches a container, the container is scanned at its
   station and the step is logged through the chain of identity; a failed read is re-read
   (COI-03), then the phase fails (the batch holds); a mismatch (COI-30) fails the phase before
   its actuator is commanded, and the cell has held every batch the verdict names.
3. **work**: the phase's duration on sim time (the process-equipment devices replace this
   stand-in as they land).
4. **release**: everything it holds goes back to the arbiter at once; a phase stopped by a hold
   releases too (a batch-local fault stops other batches only through what it blocks: INT-03).
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


class ProcessPhase(py_trees.behaviour.Behaviour):
    """See the module docstring. ``phases``/``index``: the batch's run phases and this one's place."""

    def __init__(self, name: str, ctx: Any, cell: Any, ex: Any, phases: list[Any], index: int) -> None:
        super().__init__(name)
        self.ctx, self.cell, self.ex = ctx, cell, ex
        self.phases, self.index = phases, index
        self.ph = phases[index]
        self.reason = ""
        self._reset()

    def _reset(self) -> None:
        self.rid: int | None = None
        self.t_work: float | None = None
        self.steps_done = False
        self.attempt = 1

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
            try:
                action, why = self._identity_steps()
            except ValueError as exc:  # the chain refused an event (CustodyError, GenealogyError): hold
                return self.fail(f"chain of identity: {exc}")
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
        assert self.t_work is not None
        left = ph.duration - (now - self.t_work)
        self.feedback_message = f"{max(left, 0.0):.0f} s left"
        if left > 0:
            return Status.RUNNING
        return self._finish()

    # ------------------------------------------------------------------ steps
    def _station(self) -> str:
        for res, station in STATION_OF:
            if res in self.ph.resources:
                return station
        return "WS"

    def _identity_steps(self) -> tuple[str, str]:
        """The chain-of-identity steps of this phase, before its actuator moves."""
        ph, ex, cell = self.ph, self.ex, self.cell
        b = ex.batch_id
        aph, bag = f"APH-{b}", f"BAG-{b}"
        g = cell.coi.genealogy
        kind = ph.kind.value
        if ph.id == "receipt":
            if g.get(aph) is None:
                return cell.receive(ex, aph, "RTP")
            return "PROCEED", ""
        product = bag if g.get(bag) is not None else aph
        c = g.get(product)
        here = c.location if c is not None else "WS"
        if kind == "incubation":
            return cell.scan_step(ex, E.INCUBATOR_IN, product, here, ex.slot, equipment="INC",
                                  extra={"door_open_s": 10}, attempt=self.attempt)
        station = self._station()
        if here != station:  # out of the slot or over from the last station
            event = E.INCUBATOR_OUT if here == ex.slot else E.MOVE
            extra = {"door_open_s": 10} if event is E.INCUBATOR_OUT else {}
            act, why = cell.scan_step(ex, event, product, here, station, equipment="INC" if event is
                                      E.INCUBATOR_OUT else "ARM", extra=extra, attempt=self.attempt)
            if act != "PROCEED":
                return act, why
        if ph.id == "activation" and g.get(bag) is None:  # the culture bag, a child of the apheresis bag
            return cell.register(ex, bag, station, ContainerKind.CULTURE_BAG, [aph], attempt=self.attempt)
        if "WLD" in ph.resources:  # SEG-03: a weld joins only containers of one COI
            media = f"MEDIA-{b}-{ph.id}"
            if g.get(media) is None:
                act, why = cell.register(ex, media, station, ContainerKind.TRANSFER_BAG, [product],
                                         attempt=self.attempt)
                if act != "PROCEED":
                    return act, why
            return cell.weld(ex, product, media, station)
        if ph.open and "CC" in ph.resources:
            return cell.scan_step(ex, E.SAMPLE, product, station, extra={"test_ordered": "count/viability"},
                                  attempt=self.attempt)
        if ph.id == "fill":
            return cell.scan_step(ex, E.FILL, product, station, extra={"bag_count": 1, "volumes_ml": [50.0]},
                                  attempt=self.attempt)
        if ph.open:
            return cell.scan_step(ex, E.OPEN_START, product, station, attempt=self.attempt)
        if "CRF" in ph.resources and ph.id == "freeze":
            return cell.scan_step(ex, E.CRYO_START, product, station, equipment="CRF",
                                  extra={"crf_program": "CRF-SIM"}, attempt=self.attempt)
        return "PROCEED", ""

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
