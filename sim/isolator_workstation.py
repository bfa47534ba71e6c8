"""The isolator's workstation: whether a product container is open there (lid sensor).

An open container under the first-air column makes that column a keep-out for the robot
(``container_open:<station>`` in ``config/geometry.yaml``; no part of the arm above an open
container, Annex 1 first-air protection [ANNEX1-2022 §4.21] [M]). The isolator reports it; the
arm's motion check activates the keep-out from that report.

Part of :class:`~.isolator.IsolatorModel` (a mixin).
"""

from __future__ import annotations

from .common import InvalidCommand

STATIONS = ("workstation",)
"""Stations with a container lid sensor: the names of their geometry.yaml equipment boxes."""


class IsolatorWorkstation:
    """Containers opened and closed at the stations (idempotent commands)."""

    _open_stations: set[str]

    def _station(self, station: str) -> str:
        if station not in STATIONS:
            raise InvalidCommand(f"unknown station {station!r}; stations are {list(STATIONS)}")
        return station

    def open_container(self, station: str) -> None:
        """A product container is opened at ``station`` (its first-air keep-out becomes active)."""
        self._open_stations.add(self._station(station))

    def close_container(self, station: str) -> None:
        self._open_stations.discard(self._station(station))

    def workstation_sensors(self) -> dict[str, bool]:
        return {f"station.{s}.container_open": s in self._open_stations for s in STATIONS}
