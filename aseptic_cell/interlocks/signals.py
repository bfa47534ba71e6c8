"""Latest device signals, and the documented signal vocabulary of the interlock catalogue.

The names in ``config/interlocks.yaml`` are the contract between the interlock engine and the
device layer: each device adapter publishes its state into a :class:`SignalTable` under the
names listed in :data:`KNOWN_SIGNALS`. Placeholders are filled verbatim with the configured
ids (``isolator.glove.{port}.in_use`` → ``isolator.glove.GP3.in_use``; hatch doors are ``A``
and ``B``; robot-relevant door ids are those of ``geometry.yaml``, e.g. ``hatch_b``,
``rtp1_alpha``, ``autoclave_unload``).

Every signal must be re-published at least every ``parameters.stale_after_s`` seconds, even
when its value has not changed (latched results such as ``autoclave.last_result`` included):
a value older than that counts as unsafe (ARCHITECTURE rule 6).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from aseptic_cell.config.interlocks import InterlockCatalogue, iter_comparisons

SignalValue = bool | int | float | str
"""Types a signal may carry. ``None`` is not a value: remove the signal (or let it go stale)."""


class Sample(NamedTuple):
    """One measured signal value."""

    value: SignalValue
    t: float
    """Time the value was measured, in the engine clock's time base (seconds)."""
    source: str
    """Id of the device that reported it (e.g. ``ISO1``); used for communication loss."""


class SignalTable:
    """The latest value of each device signal, with its measurement time and source device.

    Not thread-safe: update it from the same executor that evaluates the interlocks.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Sample] = {}
        self._lost: set[str] = set()

    def update(self, name: str, value: SignalValue, t: float, source: str) -> bool:
        """Record ``value`` of signal ``name`` measured at ``t`` by device ``source``.

        An older sample than the one held (``t`` < stored ``t``) is ignored, so out-of-order
        delivery never replaces a newer value.

        Returns:
            True if the sample was stored.

        Raises:
            TypeError: ``value`` is not a bool, int, float or str.
            ValueError: empty ``name`` or ``source``, or a non-finite ``t``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"signal name must be a non-empty string, got {name!r}")
        if not isinstance(source, str) or not source:
            raise ValueError(f"signal {name}: source must be a non-empty device id, got {source!r}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"signal {name}: measurement time must be a finite number, got {t!r}")
        if isinstance(value, bool) or type(value) in (int, float, str):
            pass
        elif isinstance(value, float):  # float subclasses such as numpy.float64
            value = float(value)
        elif isinstance(value, int):  # IntEnum and friends
            value = int(value)
        elif isinstance(value, str):  # str-valued enums: store the plain text
            value = str.__str__(value)
        else:
            raise TypeError(
                f"signal {name}: value {value!r} of type {type(value).__name__} is not bool/int/float/str"
            )
        old = self._entries.get(name)
        if old is not None and t < old.t:
            return False
        self._entries[name] = Sample(value, float(t), source)
        return True

    def update_many(self, values: Mapping[str, SignalValue], t: float, source: str) -> None:
        """Record several signals measured together by one device."""
        for name, value in values.items():
            self.update(name, value, t, source)

    def update_from(self, values: Mapping[str, SignalValue | None], t: float, source: str) -> None:
        """A device's whole reading at ``t``: each signal recorded as by :meth:`update`, a ``None``
        value removed (unknown). The same result as those calls one by one, faster: a value that
        is the one held (same type, equal, same source) is only re-stamped at ``t`` (it was
        validated when stored).

        Raises:
            TypeError, ValueError: as :meth:`update` (``t`` and ``source`` checked once).
        """
        if not isinstance(source, str) or not source:
            raise ValueError(f"signal source must be a non-empty device id, got {source!r}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"signals of {source}: measurement time must be a finite number, got {t!r}")
        tf = float(t)
        entries = self._entries
        new = tuple.__new__
        for name, value in values.items():
            if value is None:
                entries.pop(name, None)
                continue
            old = entries.get(name)
            if old is not None:
                ov, ot, osrc = old
                if (ov is value or (type(ov) is type(value) and ov == value)) and osrc == source:
                    if tf >= ot:
                        entries[name] = new(Sample, (ov, tf, osrc))
                    continue
            self.update(name, value, tf, source)

    def remove(self, name: str) -> None:
        """Forget a signal (it then reads as missing)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Sample | None:
        return self._entries.get(name)

    def mark_comm_lost(self, source: str) -> None:
        """Communication with device ``source`` is lost: all its signals count as unsafe."""
        self._lost.add(source)

    def mark_comm_ok(self, source: str) -> None:
        """Communication with ``source`` is back (its old values still go stale by age)."""
        self._lost.discard(source)

    def comm_lost(self, source: str) -> bool:
        return source in self._lost

    @property
    def lost_sources(self) -> frozenset[str]:
        return frozenset(self._lost)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def sources(self) -> frozenset[str]:
        """The sources (device ids, ``supervisor``) that have delivered at least one signal."""
        return frozenset(s.source for s in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


# ----------------------------------------------------------------------------- documentation table
@dataclass(frozen=True)
class SignalDoc:
    type: str
    """``bool``, ``float`` (int accepted) or ``str`` (with its allowed values)."""
    meaning: str
    device: str
    """Device (kind) expected to publish it."""


KNOWN_SIGNALS: dict[str, SignalDoc] = {
    # --- isolator: pass-through hatch (placeholder {other}/{door} = hatch door A or B)
    "isolator.hatch.door_{other}.closed": SignalDoc(
        "bool", "hatch door (A or B) proven closed (position switch)", "isolator"),
    "isolator.hatch.seal_{other}.inflated": SignalDoc(
        "bool", "inflatable seal of hatch door (A or B) at pressure (seal switch, not door position)",
        "isolator"),
    "isolator.hatch.dwell_elapsed_s": SignalDoc(
        "float", "seconds since both hatch doors were last closed and sealed (0 while either is open)",
        "isolator"),
    # --- isolator: environment
    "isolator.dp_in_band": SignalDoc(
        "bool", "measured isolator overpressure inside its alarm band now (a permissive: no delay; the "
        "ISO1_DP_LOW/HIGH alarms apply the configured alarm delay)",
        "isolator"),
    "isolator.decon_status": SignalDoc(
        "str: NOT_DECONTAMINATED | CYCLE_RUNNING | AERATING | DECONTAMINATED_RELEASED | BREACHED",
        "decontamination state: RELEASED = last VHP cycle PASS, aeration endpoint met, no breach since",
        "isolator/vhp"),
    "isolator.leak_test_passed": SignalDoc(
        "bool", "enclosure pressure-hold (leak) test passed with no breach since (VHP pre-check [QB-ROOM])",
        "isolator"),
    "isolator.gloves_extended": SignalDoc(
        "bool", "all gloves extended on their racks, fingers spread (VHP exposure)", "isolator"),
    "isolator.any_glove_in_use": SignalDoc(
        "bool", "any glove port has an arm in it (port sensor or arm-in-glove detection)", "isolator"),
    "isolator.particles.monitor_running": SignalDoc(
        "bool", "grade-A total particle counter sampling", "isolator"),
    "isolator.particles.sample_flow_ok": SignalDoc(
        "bool", "particle counter sample flow within tolerance (>= 28.3 L/min)", "isolator"),
    "isolator.particles.action_excursion": SignalDoc(
        "bool", "an action-level particle excursion is active", "isolator"),
    "isolator.particles.0_5_per_m3": SignalDoc(
        "float", "grade-A >= 0.5 um concentration of the last sample (or the sample in progress, when higher)",
        "isolator"),
    "isolator.particles.5_0_per_m3": SignalDoc("float", "grade-A >= 5 um concentration, as above", "isolator"),
    "isolator.particles.5_0_count": SignalDoc("float", ">= 5 um particles counted in that sample", "isolator"),
    "isolator.particles.0_5_alert": SignalDoc("bool", ">= 0.5 um above the alert level", "isolator"),
    "isolator.particles.0_5_action": SignalDoc("bool", ">= 0.5 um above the action limit", "isolator"),
    "isolator.particles.5_0_alert": SignalDoc(
        "bool", ">= 5 um above the alert level (a single count, or the repeated-count trend)", "isolator"),
    "isolator.particles.5_0_action": SignalDoc(
        "bool", ">= 5 um action excursion (not a single count by itself: Annex 1 §9 [ANNEX1-2022] [M])",
        "isolator"),
    "isolator.airflow_m_s": SignalDoc("float", "unidirectional airflow velocity at the working height", "isolator"),
    "isolator.station.{station}.container_open": SignalDoc(
        "bool", "a product container is open at that station (lid sensor); activates the first-air keep-out "
        "container_open:<station> of geometry.yaml for every arm motion", "isolator"),
    # --- isolator: rapid transfer ports (placeholder {rtp} = RTP id, e.g. RTP1)
    "isolator.rtp.{rtp}.beta_docked": SignalDoc("bool", "a beta container is docked at the RTP", "isolator"),
    "isolator.rtp.{rtp}.beta_locked": SignalDoc(
        "bool", "the docked beta is locked (rotated home)", "isolator"),
    "isolator.rtp.{rtp}.alpha_closed": SignalDoc("bool", "RTP alpha door proven closed", "isolator"),
    # --- isolator: glove ports (placeholder {port} = glove port id, e.g. GP1)
    "isolator.glove.{port}.last_test": SignalDoc(
        "str: PASS | FAIL | NONE", "result of the port's last glove integrity test", "isolator"),
    "isolator.glove.{port}.test_age_h": SignalDoc(
        "float", "hours since that last glove integrity test", "isolator"),
    "isolator.glove.{port}.visual_defect": SignalDoc(
        "bool", "an unresolved visual defect is recorded on the port's glove/sleeve (latest recorded visual "
        "check; a defect stays until a later check after a passing integrity test finds none)",
        "supervisor (recorded visual checks)"),
    "isolator.glove.{port}.visual_check_age_h": SignalDoc(
        "float", "hours since the last recorded visual check of the port's glove (absent: none recorded)",
        "supervisor (recorded visual checks)"),
    "isolator.glove.{port}.in_use": SignalDoc("bool", "an arm is in that glove", "isolator"),
    # --- VHP unit
    "vhp.cycle_active": SignalDoc("bool", "a VHP cycle is running (any phase, aeration included)", "vhp"),
    "vhp.h2o2_ppm": SignalDoc("float", "H2O2 concentration in the isolator, ppm (low-range sensor)", "vhp"),
    # --- autoclave
    "autoclave.last_result": SignalDoc(
        "str: PASS | FAIL | NONE", "result of the last sterilisation cycle (F0, band, no alarms)",
        "autoclave"),
    "autoclave.sterile_load_available": SignalDoc(
        "bool", "the chamber holds the load of that PASS cycle, not yet unloaded", "autoclave"),
    "autoclave.door_load.closed": SignalDoc("bool", "loading (non-sterile side) door proven closed",
                                            "autoclave"),
    "autoclave.door_unload.closed": SignalDoc("bool", "unloading (isolator side) door proven closed",
                                              "autoclave"),
    "autoclave.gaskets_ok": SignalDoc("bool", "both door gaskets pressurised / seated", "autoclave"),
    "autoclave.cycle_active": SignalDoc("bool", "a program is running", "autoclave"),
    "autoclave.chamber_gauge_abs_kpa": SignalDoc(
        "float", "MAGNITUDE of the chamber gauge pressure |p_chamber - p_atm| in kPa "
        "(so a vacuum blocks the door too)", "autoclave"),
    "autoclave.chamber_t_c": SignalDoc("float", "chamber (drain) temperature, deg C", "autoclave"),
    # --- robot arm
    "arm.at_decon": SignalDoc("bool", "arm at the validated decon pose (within tolerance)", "arm"),
    "arm.drives_enabled": SignalDoc("bool", "drives powered (False = safe torque off)", "arm"),
    "arm.speed_class": SignalDoc(
        "str: near_product | transit", "active speed class (near_product = reduced, <= 250 mm/s)", "arm"),
    "arm.clear_of.{door}": SignalDoc(
        "bool", "arm confirmed outside that door's swept volume (door id as in geometry.yaml)", "arm"),
    # --- doors as seen by the robot (placeholder {door} = door id as in geometry.yaml)
    "door.{door}.open": SignalDoc("bool", "door fully open (end position)", "door owner device"),
    "door.{door}.locked": SignalDoc("bool", "door locked in its open position", "door owner device"),
    # --- batch executive and operator session
    "batch.end_glove_test_done": SignalDoc(
        "bool", "end-of-batch glove test done for every port used", "supervisor (batch)"),
    "cell.bypass_active": SignalDoc(
        "bool", "an approved interlock bypass is active (raises CELL_BYPASS_ACTIVE)", "supervisor (bypass)"),
    "batch.end_glove_test_deviation_approved": SignalDoc(
        "bool", "a deviation for the missing or failed end-of-batch glove test of this batch is approved "
        "by QA (e-signed)", "supervisor (deviations)"),
}
"""Signal name pattern → type, meaning, publishing device. Covers every signal of the shipped
catalogue (checked by :func:`unknown_signals` in the tests)."""

_PH = re.compile(r"\{([a-z]+)\}")


def _pattern_regex(pattern: str, ids: Mapping[str, Sequence[str]]) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _PH.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        choices = ids.get(m.group(1)) or ()
        out.append("(?:" + "|".join(re.escape(c) for c in choices) + ")" if choices else r"[A-Za-z0-9_\-]+")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


def _expand(pattern: str, ids: Mapping[str, Sequence[str]]) -> list[str]:
    names = [pattern]
    for ph in _PH.findall(pattern):
        choices = ids.get(ph) or ()
        if not choices:
            continue
        names = [n.replace("{" + ph + "}", c) for n in names for c in choices]
    return names


def unknown_signals(
    catalogue: InterlockCatalogue,
    port_ids: Iterable[str] = (),
    rtp_ids: Iterable[str] = (),
    door_ids: Iterable[str] = (),
    hatch_doors: Iterable[str] = ("A", "B"),
) -> list[str]:
    """Signals used by ``catalogue`` that :data:`KNOWN_SIGNALS` does not document.

    A catalogue signal is known if its pattern is a key of the table, or if every concrete
    name it expands to (placeholders filled with the given ids) matches a documented pattern.

    Returns:
        Sorted signal names (patterns or expanded names) that are not documented.
    """
    hatch = list(hatch_doors)
    ids: dict[str, list[str]] = {
        "port": list(port_ids), "rtp": list(rtp_ids),
        "door": list(dict.fromkeys([*hatch, *door_ids])), "other": hatch,
    }
    regexes = [_pattern_regex(p, ids) for p in KNOWN_SIGNALS]
    unknown: set[str] = set()
    for rule in catalogue.rules:
        for cmp_ in iter_comparisons(rule.when):
            if cmp_.signal in KNOWN_SIGNALS:
                continue
            for name in _expand(cmp_.signal, ids):
                if not any(rx.match(name) for rx in regexes):
                    unknown.add(name)
    return sorted(unknown)
