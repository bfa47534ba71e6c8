"""The master recipe for scheduling: phases with their resources, durations, windows and holds.

``config/processes/*.yaml`` — one autologous CAR-T process per file (the planning values of
the reference process: a closed automated CAR-T run of ~13 days [ZHU-2018], 9-11 days of
expansion after activation/transduction [CCI-2018]). Each phase is flagged ``open`` (needs
``GRADE_A_OPEN_ZONE``, single open patient in grade A [EU-ATMP-2017] [EUGMP-CH5]) or closed,
``arm_required``, lists its resources, its duration, its ``max_hold`` (a hold longer than this
raises a deviation for that batch only) and optionally a time window relative to the end of an
earlier phase (SCH-P3: transduction window after activation, feed window, ``t_cryo_max``,
``t_fresh_max``). Durations are written ``"15min"``, ``"24h"``, ``"2d"``, ``"90s"`` or a number
of minutes; every value is a recipe parameter [M].
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from ..config.base import Identifier, ItemStatus, Model
from ..config.loader import ConfigError, ConfigIssue, parse_yaml_file
from .resources import ARM, OPEN_ZONE, ResourceSet

_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DUR = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|min|h|d)\s*$")


def _duration(v: Any) -> float:
    """A duration in seconds from ``"15min"``/``"24h"``/``"2d"``/``"90s"`` or a number of minutes."""
    if isinstance(v, bool):
        raise ValueError(f"a duration is a number of minutes or a string like '15min', '24h'; got {v!r}")
    if isinstance(v, (int, float)):
        if not v >= 0 or v == float("inf"):
            raise ValueError(f"a duration must be a finite number >= 0, got {v!r}")
        return float(v) * 60.0
    if isinstance(v, str):
        m = _DUR.match(v)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"a duration is a number of minutes or a string like '15min', '24h', '2d'; got {v!r}")


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds (written in the YAML with a unit)."""


def fmt_duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}min"


class PhaseKind(StrEnum):
    MANIPULATION = "manipulation"   # hands-on or equipment work, acquires its resources
    INCUBATION = "incubation"       # in the batch's incubator slot, acquires nothing else
    SAFETY = "safety"               # safety/containment phase (glove test, spill cleanup), first in arbitration


class Window(Model):
    """The phase must start between ``end(after) + earliest`` and ``end(after) + latest``."""

    after: Identifier
    earliest: Duration = 0.0
    latest: Duration
    name: str = ""
    hard: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.earliest > self.latest:
            raise ValueError(f"window earliest {fmt_duration(self.earliest)} is after latest "
                             f"{fmt_duration(self.latest)}")
        return self


class Phase(Model):
    id: Identifier
    name: str = ""
    kind: PhaseKind = PhaseKind.MANIPULATION
    open: bool = False
    arm_required: bool = False
    resources: list[str] = Field(default_factory=list)
    start_when_free: list[str] = Field(default_factory=list)
    """Resources of a later phase of a window chain that must be free (not held) for this one
    to start, e.g. the CRF at formulation for ``t_cryo_max``; not acquired."""
    duration: Duration
    max_hold: Duration | None = None
    out_of_incubator: bool = False
    optional: bool = False
    window: Window | None = None

    @field_validator("resources", "start_when_free")
    @classmethod
    def _known(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"resources listed twice: {sorted({r for r in v if v.count(r) > 1})}")
        known: Collection[str] | None = (info.context or {}).get("resources")
        if known is not None:
            for r in v:
                if r not in known:
                    raise ValueError(f"unknown resource {r!r}; the cell has: {sorted(known)}")
        return v

    @model_validator(mode="after")
    def _flags(self) -> Phase:
        if self.kind is PhaseKind.INCUBATION:
            if self.resources or self.open or self.arm_required:
                raise ValueError("an incubation phase holds only its slot: no resources, not open, no arm")
            return self
        if self.arm_required != (ARM in self.resources):
            raise ValueError(f"arm_required is {self.arm_required} but ARM is "
                             f"{'' if ARM in self.resources else 'not '}in resources")
        if self.open != (OPEN_ZONE in self.resources):
            raise ValueError(f"open is {self.open} but {OPEN_ZONE} is "
                             f"{'' if OPEN_ZONE in self.resources else 'not '}in resources "
                             "(an open phase needs the open zone, a closed one must not take it)")
        if not self.resources:
            raise ValueError("a manipulation phase needs at least one resource")
        return self


class ProcessDefinition(Model):
    """``config/processes/<id>.yaml``: the phases of one product's master recipe, in order."""

    id: Identifier
    version: int = Field(ge=1)
    status: ItemStatus = "draft"  # change control (aseptic_cell/config/change_control.py)
    product: str = ""
    description: str = ""
    t_out_max: Duration = 30 * 60.0
    default_max_hold: Duration = 30 * 60.0
    phases: list[Phase] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ProcessDefinition:
        problems: list[str] = []
        index: dict[str, int] = {}
        for i, ph in enumerate(self.phases):
            if ph.id in index:
                problems.append(f"phases[{i}]: phase id {ph.id!r} repeats phases[{index[ph.id]}]")
            index.setdefault(ph.id, i)
            if ph.out_of_incubator and ph.duration > self.t_out_max:
                problems.append(f"phases[{i}] {ph.id}: takes the product out of the incubator for "
                                f"{fmt_duration(ph.duration)} > t_out_max {fmt_duration(self.t_out_max)}")
        for i, ph in enumerate(self.phases):
            w = ph.window
            if w is None:
                continue
            j = index.get(w.after)
            if j is None or j >= i:
                problems.append(f"phases[{i}] {ph.id}: window.after {w.after!r} is not an earlier phase")
                continue
            if self.phases[j].optional:
                problems.append(f"phases[{i}] {ph.id}: window.after {w.after!r} is an optional phase")
                continue
            gap = sum(p.duration for p in self.phases[j + 1:i] if not p.optional)
            if not w.earliest <= gap <= w.latest:
                problems.append(
                    f"phases[{i}] {ph.id}: window {w.name or ''} [{fmt_duration(w.earliest)}, "
                    f"{fmt_duration(w.latest)}] after {w.after} is inconsistent with the durations: the phases "
                    f"between them take {fmt_duration(gap)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def phase(self, pid: str) -> Phase:
        for p in self.phases:
            if p.id == pid:
                return p
        raise KeyError(f"unknown phase {pid!r} in process {self.id!r}")

    def run_phases(self, *, cryopreserved: bool = False) -> list[Phase]:
        """The phases one batch runs (optional phases only for cryopreserved starting material)."""
        return [p for p in self.phases if cryopreserved or not p.optional]

    def latest_start(self, phases: list[Phase], idx: int, ends: dict[str, float]) -> float | None:
        """The latest start of ``phases[idx]`` given the end times of the phases already done:
        its own hard window, and for a phase inside a window chain (between ``window.after`` and
        the windowed phase) the windowed phase's latest start minus the durations still to run
        before it — so fill and label are urgent once formulation is done (``t_cryo_max``)."""
        out: float | None = None
        ph = phases[idx]
        if ph.window is not None and ph.window.hard and ph.window.after in ends:
            out = ends[ph.window.after] + ph.window.latest
        for k in range(idx + 1, len(phases)):
            w = phases[k].window
            if w is None or not w.hard or w.after not in ends:
                continue
            if not any(p.id == w.after for p in phases[:idx]):
                continue
            t = ends[w.after] + w.latest - sum(p.duration for p in phases[idx:k])
            out = t if out is None else min(out, t)
        return out

    def nominal_plan(self, *, cryopreserved: bool = False) -> list[PlannedPhase]:
        """Each phase's nominal start offset (no waiting) from the batch start."""
        t = 0.0
        out = []
        for p in self.run_phases(cryopreserved=cryopreserved):
            out.append(PlannedPhase(p, t, t + p.duration))
            t += p.duration
        return out

    def nominal_duration(self, *, cryopreserved: bool = False) -> float:
        return sum(p.duration for p in self.run_phases(cryopreserved=cryopreserved))

    def open_blocks(self, *, cryopreserved: bool = False) -> Iterator[list[Phase]]:
        """Runs of consecutive open phases (one changeover each at most)."""
        block: list[Phase] = []
        for p in self.run_phases(cryopreserved=cryopreserved):
            if p.open:
                block.append(p)
            elif block:
                yield block
                block = []
        if block:
            yield block


@dataclass(frozen=True)
class PlannedPhase:
    phase: Phase
    start: float
    end: float


def load_process(path: str | Path, resources: ResourceSet | Collection[str]) -> ProcessDefinition:
    """Load one process file, checking resource names against the cell's (raises :class:`ConfigError`)."""
    p = Path(path)
    known = resources.requestable() if isinstance(resources, ResourceSet) else set(resources)
    issues: list[ConfigIssue] = []
    proc = parse_yaml_file(p, ProcessDefinition, f"processes/{p.name}", issues, {"resources": known})
    if proc is None:
        raise ConfigError(issues)
    return proc


def load_processes(directory: str | Path, resources: ResourceSet) -> dict[str, ProcessDefinition]:
    """Every ``<directory>/processes/*.yaml`` by id."""
    out: dict[str, ProcessDefinition] = {}
    issues: list[ConfigIssue] = []
    for f in sorted((Path(directory) / "processes").glob("*.yaml")):
        try:
            proc = load_process(f, resources)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if proc.id in out:
            issues.append(ConfigIssue(f"processes/{f.name}", "id", f"process id {proc.id!r} is defined twice"))
        out[proc.id] = proc
    if issues:
        raise ConfigError(issues)
    return out
