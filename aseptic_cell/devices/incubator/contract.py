"""The multi-slot incubator's contract: commands, typed readings, its own hard interlock (like
its controller's: a slot holds one batch's containers only, COI-20 / INC-01) and its signals.

Slots are numbered 1..``slots``. A slot is free, or assigned to one batch (``batch_id`` + COI);
only a container of that COI may be loaded into it; it is released only when empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalogue import REASON, Arg, CommandSpec, command
from ..process_equipment import equipment, slot_number
from ..values import Refusal, bool_or_none, num_or_none

SLOT = Arg("slot", "float")
COMMANDS: tuple[CommandSpec, ...] = (
    command("assign_slot", SLOT, Arg("batch_id", "str"), Arg("coi", "str"),
            description="bind a free slot to one batch and its COI"),
    command("release_slot", SLOT, description="free an empty slot"),
    command("load", SLOT, Arg("container_id", "str"), Arg("coi", "str"),
            description="put a container of the slot's COI into the slot (one door access)"),
    command("unload", SLOT, Arg("container_id", "str"), description="take the container out (one door access)"),
    command("safe_state", REASON, moves=False, description="hold: no door access until recovered; "
                                                            "climate control runs on (incubation continues)"),
)


@dataclass(frozen=True)
class Slot:
    batch_id: str | None
    coi: str | None
    container_id: str | None
    """'' = free / empty; None = unknown"""


_SLOT_KEYS: dict[int, tuple[tuple[str, str, str], ...]] = {}


def _slot_keys(n: int) -> tuple[tuple[str, str, str], ...]:
    """The reading keys of slots 1..n (built once per slot count: the signals refresh every tick)."""
    keys = _SLOT_KEYS.get(n)
    if keys is None:
        keys = _SLOT_KEYS[n] = tuple((f"slot.{i}.batch_id", f"slot.{i}.coi", f"slot.{i}.container_id")
                                     for i in range(1, n + 1))
    return keys


@dataclass(frozen=True)
class IncubatorReadings:
    temp_c: float | None
    co2_pct: float | None
    rh_pct: float | None
    door_open: bool | None
    overtemp_cutout: bool | None
    door_events: float | None
    slots: tuple[Slot, ...]

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: Any) -> IncubatorReadings:
        keys = _slot_keys(equipment(cfg).incubator.slots)
        get = v.get
        slots = tuple(Slot(*(x if isinstance(x := get(k), str) else None for k in ks)) for ks in keys)
        return cls(num_or_none(v.get("temp_c")), num_or_none(v.get("co2_pct")), num_or_none(v.get("rh_pct")),
                   bool_or_none(v.get("door_open")), bool_or_none(v.get("overtemp_cutout")),
                   num_or_none(v.get("door_events")), slots)


def hard_interlock(name: str, args: dict[str, Any], r: IncubatorReadings, cfg: Any) -> Refusal:
    if "slot" not in args:
        return None
    n = slot_number(args["slot"], len(r.slots))
    if n is None:
        return ("INC_SLOT_INVALID", f"slot must be a whole number 1..{len(r.slots)}, got {args['slot']!r}")
    s = r.slots[n - 1]
    if s.coi is None or s.batch_id is None or s.container_id is None:
        return ("INC_SLOT_UNKNOWN", f"slot {n}: its assignment is not reported (unknown is unsafe)")
    if name == "assign_slot":
        if s.coi and (s.coi != args["coi"] or s.batch_id != args["batch_id"]):
            return ("INC_SLOT_ASSIGNED", f"slot {n} is assigned to batch {s.batch_id} (COI {s.coi})")
    elif name == "release_slot":
        if s.container_id:
            return ("INC_SLOT_OCCUPIED", f"slot {n} still holds container {s.container_id}")
    elif name == "load":
        if not s.coi:
            return ("INC_SLOT_NOT_ASSIGNED", f"slot {n} is not assigned to a batch")
        if s.coi != args["coi"]:
            return ("INC_COI_MISMATCH", f"slot {n} belongs to COI {s.coi}; container {args['container_id']} "
                                        f"is of COI {args['coi']} (COI-20)")
        if s.container_id and s.container_id != args["container_id"]:
            return ("INC_SLOT_OCCUPIED", f"slot {n} already holds container {s.container_id}")
    elif name == "unload":
        if s.container_id != args["container_id"]:
            return ("INC_CONTAINER_NOT_IN_SLOT", f"slot {n} holds {s.container_id or 'nothing'}, "
                                                 f"not {args['container_id']}")
    return None


def signals(r: IncubatorReadings, cfg: Any) -> dict[str, Any]:
    c = equipment(cfg).incubator
    t, co2, rh = r.temp_c, r.co2_pct, r.rh_pct
    in_spec: bool | None = None
    if t is not None and co2 is not None and rh is not None:
        in_spec = (c.temp_alarm_low_c <= t <= c.temp_alarm_high_c and c.co2_alarm_low_pct <= co2 <= c.co2_alarm_high_pct
                   and rh >= c.rh_alarm_low_pct and r.overtemp_cutout is False)  # a tripped cut-out: uncontrolled
    out: dict[str, Any] = {"incubator.temp_c": t, "incubator.co2_pct": co2, "incubator.rh_pct": rh,
                           "incubator.in_spec": in_spec, "incubator.door_open": r.door_open,
                           "incubator.overtemp_cutout": r.overtemp_cutout,
                           "incubator.door_events": r.door_events,
                           "incubator.slots_free": (None if any(s.coi is None for s in r.slots)
                                                    else sum(1 for s in r.slots if not s.coi))}
    for names, s in zip(_signal_keys(len(r.slots)), r.slots, strict=True):
        out[names[0]], out[names[1]], out[names[2]] = s.batch_id, s.coi, s.container_id
    return out


_SIGNAL_KEYS: dict[int, tuple[tuple[str, str, str], ...]] = {}


def _signal_keys(n: int) -> tuple[tuple[str, str, str], ...]:
    keys = _SIGNAL_KEYS.get(n)
    if keys is None:
        keys = _SIGNAL_KEYS[n] = tuple((f"incubator.slot.{i}.batch_id", f"incubator.slot.{i}.coi",
                                        f"incubator.slot.{i}.container_id") for i in range(1, n + 1))
    return keys


FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Climate", ("temp", "co2", "rh", "door")),
                                                             ("Slots", ("slot.",)), ("Unit", ("",)))
DEVICE_CLASS = "Multi-slot CO2 incubator (LADS Device)"
MODEL = "Emulated incubator"

Readings = IncubatorReadings
