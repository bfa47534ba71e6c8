"""Whole random sequences against the 4-patient cell, as data: a sequence is a start (which
campaign snapshot) and a list of steps ``(kind, a, b)`` (tests/unit/test_patients_stateful.py
draws them with hypothesis; benchmarks/stateful_patients.py with a seeded generator).

A step is one of the rules of the stateful test (:data:`STEP_KINDS`: RunBatch, an operator
command, a signed batch command to one batch, a device fault of the cell or of the process
equipment, set or cleared, a scanner misread, another patient's container at a scan point, a
cell-wide trip with or without a signed restart, time passing); ``a`` and ``b`` pick its
arguments (taken modulo their ranges, so any integers are a valid step and hypothesis shrinks
towards the first of each). After every step and every supervisor tick the segregation / COI
monitor and the Annex 1 monitor are checked (:class:`.fuzz_patients.PatientFuzzCell`); the
sequence stops at the first violation and says which step.

Cost (issue 14; README, Tests): the copy of the snapshot is a thaw of its pickle bytes
(:mod:`.fuzz_pickle`); between ticks the device models follow the twin's rest rule
(:meth:`.fuzz_patients.PatientFuzzCell.tick`); the cyclic garbage collector runs after
every sequence over that sequence's garbage only (:class:`Collector`).
"""

from __future__ import annotations

import gc
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .fuzz import FAULTS, OPERATOR_COMMANDS
from .fuzz_patients import MISREADS, PATIENT_COMMANDS, PATIENTS, PROCESS_FAULTS, CampaignSnapshots, PatientCoverage

STEP_KINDS: tuple[str, ...] = (
    "run_batch", "operator_command", "batch_command", "device_fault", "process_equipment_fault",
    "scanner_misread", "mismatched_container", "excursion", "time_passes", "more_time_passes",
)
"""The rules of the stateful test, equally likely (time is 2 of the 10)."""

Step = tuple[str, int, int]


def apply_step(f: Any, step: Step) -> None:
    """Do one step on a :class:`.fuzz_patients.PatientFuzzCell` (the monitors are checked inside)."""
    kind, a, b = step
    if kind == "run_batch":
        f.start(a % (PATIENTS + 2))
    elif kind == "operator_command":
        f.operate(a % len(OPERATOR_COMMANDS))
    elif kind == "batch_command":
        f.batch(a % len(PATIENT_COMMANDS), b % PATIENTS)
    elif kind == "device_fault":
        f.fault(a % len(FAULTS), bool(b % 2))
    elif kind == "process_equipment_fault":
        f.fault(len(FAULTS) + a % len(PROCESS_FAULTS), bool(b % 2))  # ALL_FAULTS: the cell's, then the units'
    elif kind == "scanner_misread":
        f.misread(b % PATIENTS, a % len(MISREADS))
    elif kind == "mismatched_container":
        f.mismatch(a % PATIENTS, b % PATIENTS)
    elif kind == "excursion":
        f.excursion()
        if b % 2:
            f.restart_held(a % PATIENTS)
    elif kind == "time_passes":
        f.advance((30.0, 90.0)[a % 2])
    elif kind == "more_time_passes":
        f.advance((60.0, 180.0)[a % 2])
    else:
        raise ValueError(f"unknown step kind {kind!r}; known: {STEP_KINDS}")


def random_steps(rnd: random.Random, n: int = 6) -> list[Step]:
    return [(rnd.choice(STEP_KINDS), rnd.randrange(2**16), rnd.randrange(2**16)) for _ in range(n)]


@dataclass
class Outcome:
    """What one sequence did: its violations (empty: none) and after which step."""

    start: int
    steps: list[Step]
    violations: list[str] = field(default_factory=list)
    failed_at: int | None = None

    def describe(self) -> str:
        return (f"sequence start={self.start} steps={self.steps}: after step {self.failed_at} "
                f"{self.steps[self.failed_at] if self.failed_at is not None else ''}: {self.violations[:3]}")


def run_sequence(snaps: CampaignSnapshots, start: int, steps: Sequence[Step],
                 coverage: PatientCoverage | None = None) -> Outcome:
    """A copy of snapshot ``start`` (modulo their number), then ``steps``; stops at the first violation."""
    f = snaps.start(start, coverage)
    out = Outcome(start, list(steps))
    if f.violations:  # a snapshot is checked when taken: never expected
        out.violations, out.failed_at = list(f.violations), -1
        return out
    for i, step in enumerate(steps):
        apply_step(f, step)
        if f.violations:
            out.violations, out.failed_at = list(f.violations), i
            break
    if coverage is not None:
        coverage.sequence_done(f)
    return out


class Collector:
    """The cyclic garbage collector while many sequences run: every thawed cell is one cycle-rich
    graph (~6,000 objects) that becomes garbage at the end of its sequence; with automatic
    collection each thaw's allocations trigger collections that walk the whole heap (measured:
    ~25 % of a sequence). Here the long-lived heap (snapshots, configuration, loaded modules) is
    frozen out of the collector's view and automatic collection is off; :meth:`done`, after each
    sequence, collects the youngest generation (what was allocated since the last call: that
    sequence's cell, freed while its memory is still in the cache, for the next thaw to reuse),
    and every ``full_every`` sequences all generations (what survived, e.g. hypothesis's own
    growing records of the examples, is walked only then); :meth:`close` restores the
    collector as it was."""

    def __init__(self, full_every: int = 500) -> None:
        self.full_every, self.n = full_every, 0
        self.was = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()

    def done(self) -> None:
        self.n += 1
        gc.collect(0)
        if self.n % self.full_every == 0:
            gc.collect()

    def close(self) -> None:
        gc.collect()
        gc.unfreeze()
        if self.was:
            gc.enable()


class Niced:
    """The calling thread's scheduling priority lowered by ``n`` (``nice``) while many sequences
    run, restored by :meth:`close`: in the test suite these long, CPU-bound in-process runs share 2
    cores with the system tests' processes (nodes, OPC UA servers, browsers), whose wall-clock
    deadlines (a status read every second, a 2 s staleness bound) must not starve behind them; the
    sequences only finish later. Restoring needs the right to raise a priority (root, as the
    suite's set-up runs); without it the thread stays lowered."""

    def __init__(self, n: int = 10) -> None:
        self.before = os.getpriority(os.PRIO_PROCESS, 0)
        try:
            os.setpriority(os.PRIO_PROCESS, 0, min(19, self.before + n))
        except OSError:
            pass

    def close(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, self.before)
        except OSError:
            pass


__all__ = ["STEP_KINDS", "Collector", "Niced", "Outcome", "Step", "apply_step", "random_steps", "run_sequence"]
