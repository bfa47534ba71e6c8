"""The device backend protocol and the factory that picks an implementation.

A device node talks to its device only through a :class:`DeviceBackend`: the latest
readings, and catalogue commands (:mod:`.commands`). Nothing above the backend knows which
implementation it has; :func:`make_backend` is the one place that maps the ``hardware``
parameter to a class (ARCHITECTURE rule 2, HABITS 7).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..results import CommandResult

HARDWARE_CHOICES = ("sim", "opcua", "mujoco", "gazebo")  # mujoco, gazebo: the arm only (arm_jtc_backend)


class BackendError(Exception):
    """The backend could not connect or lost its connection."""


@dataclass(frozen=True)
class Readings:
    """One snapshot of what the device reports.

    Attributes:
        values: signal name -> value (float, bool, str, or nested JSON for records).
        device_time: the device's own time stamp of the snapshot (s; sim time for the sim).
        received_wall: monotonic wall time when the backend received it (staleness).
    """

    values: dict[str, Any]
    device_time: float
    received_wall: float

    def age_s(self, now_wall: float | None = None) -> float:
        return (time.monotonic() if now_wall is None else now_wall) - self.received_wall

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def number(self, key: str, default: float = math.nan) -> float:
        v = self.values.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return default
        return float(v)


CommandOutcome = CommandResult
"""The backends' name for the one result type (:class:`aseptic_cell.results.CommandResult`)."""


@runtime_checkable
class DeviceBackend(Protocol):
    """What every backend (sim, OPC UA) provides to a device node."""

    device_id: str
    kind: str

    def connect(self, timeout_s: float) -> None:
        """Connect and wait for the first readings. Raises BackendError."""

    def close(self) -> None:
        """Disconnect; idempotent."""

    def connected(self) -> bool:
        """True while the transport is up (readings may still be stale)."""

    def latest(self) -> Readings | None:
        """The most recent readings, or None before the first."""

    def command(self, name: str, args: dict[str, Any], *, user: str = "", reason: str = "",
                timeout_s: float = 5.0) -> CommandOutcome:
        """Send a catalogue command; a refusal or a transport failure is an outcome, not an
        exception (code ``COMM_LOST`` / ``TIMEOUT`` for transport problems)."""


def make_backend(hardware: str, *, device_id: str, kind: str, **options: Any) -> DeviceBackend:
    """Create the backend selected by the ``hardware`` parameter.

    Raises:
        ValueError: unknown hardware value.
    """
    if hardware == "sim":
        from .sim_backend import SimBackend

        return SimBackend(device_id=device_id, kind=kind, **options)
    if hardware == "opcua":
        try:
            from .opcua_backend import OpcUaBackend
        except ImportError as exc:
            raise ValueError("hardware 'opcua' is not available in this build") from exc
        return OpcUaBackend(device_id=device_id, kind=kind, **options)
    if hardware in ("mujoco", "gazebo"):  # the arm's physics behind the trajectory-controller topics
        from .arm_jtc_backend import make_jtc_backend

        return make_jtc_backend(hardware, device_id=device_id, kind=kind, **options)
    raise ValueError(f"unknown hardware {hardware!r}; choose one of {list(HARDWARE_CHOICES)}")
