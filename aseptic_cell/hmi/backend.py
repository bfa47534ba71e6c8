"""What the web application needs from the cell. :class:`~.ros_backend.RosBackend` provides it
over ROS 2; unit tests provide a fake. Commands go to the supervisor's narrow API
(``/cell/batch/command``, ``/cell/batch/run``, ``/cell/operate``, ``/cell/recover``,
``/cell/alarms/acknowledge``)
so every one passes the same role and interlock checks as any other command.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..results import CommandResult
from .hub import Hub

__all__ = ["CellBackend", "CellUnavailable", "CommandResult"]


class CellUnavailable(Exception):
    """The service did not exist or did not answer in time (nothing was done, or unknown)."""


class CellBackend(Protocol):
    def start(self, hub: Hub) -> None:
        """Begin feeding ``hub`` (snapshots, events). Returns at once."""

    def stop(self) -> None: ...

    def snapshot(self) -> dict[str, Any]:
        """The current state of the cell as plain JSON-able data."""

    def trends(self) -> dict[str, Any]:
        """Trend history: ``{"t": [...], "series": {name: [...]}}`` per unit."""

    def record_path(self) -> str:
        """Path of the active batch record (from ``/cell/batch/status``), or ``""``."""

    def batch_start(self, *, recipe_id: str, batch_id: str, user: str) -> CommandResult: ...

    def batch_command(
        self, command: str, *, user: str, password: str = "", meaning: str = "", reason: str = "", batch: str = ""
    ) -> CommandResult:
        """An ISA-88 command to the campaign batch, or to the patient batch ``batch`` (issue 14)."""

    def operate(
        self, device: str, command: str, args: dict[str, Any], *, user: str, reason: str = ""
    ) -> CommandResult: ...

    def acknowledge(self, alarm_id: str, *, user: str, comment: str = "") -> CommandResult: ...

    def shelve_alarm(
        self, alarm_id: str, *, user: str, password: str, meaning: str, reason: str, duration_s: float
    ) -> CommandResult:
        """Shelve (``duration_s`` > 0) or unshelve (<= 0) an alarm (``/cell/alarms/shelve``)."""

    def recover_device(
        self, device: str, *, user: str, password: str, meaning: str, reason: str
    ) -> CommandResult:
        """Signed recovery of one latched device node (``/cell/recover``)."""
