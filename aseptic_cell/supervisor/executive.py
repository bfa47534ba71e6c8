"""One executive per batch (issue 14 item 4): what is one batch's, apart from what is the cell's.

A :class:`BatchExecutive` holds a batch's identity (batch id, COI, apheresis DIN), its master
recipe, its ISA-88 state machine, its behaviour tree and phase state machines, its active phase
and held reason, and its own record stream (its own :class:`~.journal.BatchJournal` over its own
hash-chained record: one chain per batch). The :class:`~.core.Supervisor` keeps what is the
cell's (the port, the interlock engine, alarms, users and signing, trips, process alarms, the
arbiter and the chain of identity) and the executives.

The supervisor's batch-level code reads and writes the batch through :class:`Focused`
attributes: ``sup.sm``, ``sup.batch_id``, ``sup.journal``, ... are those of the executive in
focus (the single campaign batch by default; each patient batch in turn while the supervisor
drives it), so the single-batch procedure keeps its behaviour and the one code path serves
every batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import py_trees

from ..batch.states import PhaseState, PhaseStateMachine
from .journal import BatchJournal

T = TypeVar("T")


class Focused(Generic[T]):
    """A supervisor attribute that is the focused executive's attribute of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # class access: the descriptor itself
        return getattr(obj.focus, self.name)  # type: ignore[no-any-return]

    def __set__(self, obj: Any, value: T) -> None:
        setattr(obj.focus, self.name, value)


class CoiStampedRecord:
    """A batch's record that writes the batch's COI into every entry's payload (``coi``), so
    that every record entry of a patient batch carries its chain-of-identity identifier."""

    def __init__(self, record: Any, coi: str) -> None:
        self._record = record
        self.coi = coi

    def append(self, kind: str, *, payload: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        body = dict(payload or {})
        body.setdefault("coi", self.coi)
        return self._record.append(kind, payload=body, **kw)

    def record_cycle_result(self, key: str, rep: Mapping[str, Any], **kw: Any) -> Any:
        return self._record.record_cycle_result(key, {**rep, "coi": self.coi}, **kw)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_record":  # copy/pickle protocol: not the wrapped record's
            raise AttributeError(name)
        return getattr(self._record, name)


class BatchExecutive:
    """The state of one batch (see the module docstring).

    Args:
        clock: the supervisor's clock (``now()``), for the state machines.
        journal: the batch's own record writer.
        record: the batch's own record (None: in-memory only).
        coi: the batch's chain-of-identity id ("" for a campaign batch without a patient).
        din: the apheresis DIN (ISBT 128) of the patient's collection.
    """

    def __init__(self, clock: Any, journal: BatchJournal, record: Any = None, *, coi: str = "", din: str = "",
                 patient: bool = False) -> None:
        self.clock = clock
        self.journal = journal
        self.record = record
        self.coi = coi
        self.din = din
        self.patient = patient
        """A patient batch of a multi-patient process (else the single campaign batch)."""
        self.sm = PhaseStateMachine(clock, name="batch")
        self.recipe: Any = None
        self.process: Any = None
        """The scheduling process definition of a patient batch (its phases and resources)."""
        self.batch_id = ""
        self.batch_user = ""
        self.tree: py_trees.behaviour.Behaviour | None = None
        self.phases: dict[str, PhaseStateMachine] = {}
        self.phase_order: list[str] = []
        self.active_phase: str | None = None
        self._phase_types: dict[str, str] = {}
        self._pending_failure = ""
        self.held_reason = ""
        self._hold_is_trip = False
        self._restart_user = ""
        self._confirmed: set[str] = set()
        self._end_glove_done = False
        self._robot_done = False
        self.slot: str | None = None
        """The incubator slot held from admission to the end of the run (patient batches)."""
        self.requests: dict[str, int] = {}
        """Phase path -> the arbiter request it holds or waits on."""
        self.phase_ends: dict[str, float] = {}
        """Process phase id -> its end (sim s): the windows' reference (patient batches)."""
        self.held_since = math.nan
        self.max_hold_raised = False
        self.results: dict[str, dict[str, Any]] = {}
        """``<unit>.<phase>`` -> the process equipment's result of that phase (weld, spin, count, seal)."""
        self.impacted = False
        """SEG-06 / COI-30: the batch's product may have been exposed (QA hold)."""
        self.coi_stop = ""
        """Why a COI-30 stopped this batch: no operator restart, only QA's disposition (COI-30)."""
        self.on_end: list[Callable[[BatchExecutive], None]] = []

    @property
    def state(self) -> PhaseState:
        return self.sm.state

    @property
    def active(self) -> bool:
        """In progress (not Idle, not ended)."""
        return self.sm.state is not PhaseState.IDLE and not self.sm.state.final

    def phase_kind(self, path: str) -> str:
        return self._phase_types.get(path, "")

    def __repr__(self) -> str:
        return f"BatchExecutive({self.batch_id!r}, {self.sm.state.value}, coi={self.coi!r})"
