"""Shared building blocks of the device process models.

- :class:`CommandRefused`: a device-level (PLC-like) interlock refused a command.
- :class:`FaultHooks`: named fault injection used by tests and scenarios.
- :class:`SensorChannel`: turns a true process value into what the sensor reports,
  applying sensor faults (stuck, NaN, drift, offset).
- :class:`Atmosphere`: the isolator's air (shared between isolator and VHP unit).
- :class:`DeconStatus`: the isolator decontamination status (``DecontStatus`` of the cell's
  OPC UA model, docs/opcua_cell_server.md).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from ..devices.codes import RefusalCode


class CommandRefused(Exception):
    """A command was refused by the device's own hard interlock.

    Attributes:
        code: a member of the one catalogue :class:`~aseptic_cell.devices.codes.RefusalCode`
            (e.g. ``RefusalCode.HATCH_OTHER_DOOR_OPEN``); a plain string is converted, and a
            string that is not in the catalogue raises :class:`ValueError` at once.
        reason: human-readable explanation naming the failed condition.
    """

    def __init__(self, code: RefusalCode | str, reason: str) -> None:
        self.code = RefusalCode(code)
        self.reason = reason
        super().__init__(f"{self.code.value}: {reason}")


class InvalidCommand(ValueError):
    """A command with bad arguments (unknown id, NaN set point...). Nothing changes."""


def require_finite(name: str, value: float) -> float:
    """Raise :class:`InvalidCommand` unless ``value`` is a finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidCommand(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v):
        raise InvalidCommand(f"{name} must be finite, got {value!r}")
    return v


class DeconStatus(str, enum.Enum):  # noqa: UP042 (str() of a member is its name, as before)
    NOT_DECONTAMINATED = "NOT_DECONTAMINATED"
    CYCLE_RUNNING = "CYCLE_RUNNING"
    AERATING = "AERATING"
    DECONTAMINATED_RELEASED = "DECONTAMINATED_RELEASED"
    BREACHED = "BREACHED"


@dataclass
class Atmosphere:
    """True state of the isolator air, written by the isolator and the VHP unit."""

    temp_c: float = 21.0
    rh_pct: float = 45.0
    h2o2_ppm: float = 0.0
    h2o2_surface_g: float = 0.0  # sorbed H2O2 mass (two-pool model, engineering [PDX21])


class FaultHooks:
    """Named faults with parameters.

    Device faults use plain names (``"leak"``, ``"fan_failure"``, ``"injector_failure"``,
    ``"steam_failure"``, ``"seal_loss"``, ``"arm_fault"``...). Sensor faults use
    ``"sensor:<name>"`` with ``mode`` = ``stuck`` | ``nan`` | ``drift`` | ``offset`` and,
    for drift/offset, ``rate`` (units/s) or ``offset`` (units).
    """

    def __init__(self, known: set[str] | None = None) -> None:
        self._active: dict[str, dict[str, Any]] = {}
        self._known = known

    def inject(self, name: str, **params: Any) -> None:
        if self._known is not None and not name.startswith("sensor:") and name not in self._known:
            raise InvalidCommand(f"unknown fault {name!r}; known: {sorted(self._known)}")
        if name.startswith("sensor:"):
            mode = params.get("mode", "stuck")
            if mode not in ("stuck", "nan", "drift", "offset"):
                raise InvalidCommand(f"unknown sensor fault mode {mode!r}")
            params = {"mode": mode, **params}
        self._active[name] = dict(params)

    def clear(self, name: str | None = None) -> None:
        if name is None:
            self._active.clear()
        else:
            self._active.pop(name, None)

    def active(self, name: str) -> dict[str, Any] | None:
        return self._active.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._active

    def names(self) -> list[str]:
        return sorted(self._active)


@dataclass
class SensorChannel:
    """What a sensor reports for a true value, under the channel's active fault."""

    name: str
    unit: str = ""
    _stuck_value: float | None = field(default=None, repr=False)
    _drift_start: float | None = field(default=None, repr=False)

    def read(self, true_value: float, now: float, faults: FaultHooks) -> float:
        f = faults.active(f"sensor:{self.name}")
        if f is None:
            self._stuck_value = None
            self._drift_start = None
            return true_value
        mode = f["mode"]
        if mode == "nan":
            return math.nan
        if mode == "stuck":
            if self._stuck_value is None:
                self._stuck_value = f.get("value", true_value)
            return float(self._stuck_value)
        if mode == "offset":
            return true_value + float(f.get("offset", 0.0))
        # drift
        if self._drift_start is None:
            self._drift_start = now
        return true_value + float(f.get("rate", 0.0)) * (now - self._drift_start)


def first_order(value: float, target: float, tau_s: float, dt: float) -> float:
    """Exact step of dx/dt = (target - x) / tau over dt."""
    if tau_s <= 0:
        return target
    return target + (value - target) * math.exp(-dt / tau_s)


def read_sensors(raw: dict[str, Any], now: float, faults: FaultHooks, channels: dict[str, SensorChannel],
                 held: dict[str, Any]) -> dict[str, Any]:
    """Apply ``sensor:<key>`` faults to a model's raw readings.

    Numbers go through their :class:`SensorChannel` (created on first use in ``channels``);
    digital and text readings support ``stuck`` (value latched in ``held``) and ``nan``;
    drift and offset have no meaning for them and leave them unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        f = faults.active(f"sensor:{key}")
        if isinstance(value, float):
            ch = channels.get(key)
            if ch is None:
                ch = channels[key] = SensorChannel(key)
            out[key] = ch.read(value, now, faults)
        elif f is None:
            held.pop(key, None)
            out[key] = value
        elif f["mode"] == "nan":
            out[key] = math.nan
        elif f["mode"] == "stuck":
            out[key] = held.setdefault(key, f.get("value", value))
        else:
            out[key] = value
    return out


class SubSteppedModel:
    """``step(dt)``: advance by ``dt`` sim seconds in equal sub-steps of at most
    ``substep_max_s`` (each one ``self._substep(h)``); models keep their own time ``_t`` next to
    the shared ``clock`` (the VHP unit and the autoclave)."""

    substep_max_s: float
    clock: Any
    _t: float

    def _substep(self, h: float) -> None:
        raise NotImplementedError

    def step(self, dt: float) -> None:
        """Advance the process by ``dt`` sim seconds (sub-stepped internally)."""
        dt = require_finite("dt", dt)
        if dt < 0:
            raise InvalidCommand("dt must be non-negative")
        self._t = max(self._t, self.clock.now() - dt)
        if dt == 0:
            return
        n = max(1, math.ceil(dt / self.substep_max_s - 1e-9))
        h = dt / n
        for _ in range(n):
            self._substep(h)

    def _now(self) -> float:
        return max(self._t, self.clock.now())
