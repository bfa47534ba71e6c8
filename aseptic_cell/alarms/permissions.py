"""The one permission model of the operator actions on alarms (ISA-18.2 [ISA18.2] with the GMP
overlay): each action maps to the ``users.yaml`` permission that governs it. The supervisor
(``supervisor/operator.py``) and the HMI (``hmi/app.py``) both authorise through this mapping
against the same user directory, so a role the file grants is never refused by one interface
and allowed by another (before: users.yaml let operators unshelve, the HMI checked
``alarm.shelve`` and refused).

Ending a shelve early (unshelve) makes an alarm visible again, the safe direction: it needs
``alarm.unshelve`` and no e-signature; shelving hides it and needs ``alarm.shelve`` (signed).
"""

from __future__ import annotations

ALARM_PERMISSIONS: dict[str, str] = {
    "acknowledge": "alarm.ack",
    "reset": "alarm.reset",
    "shelve": "alarm.shelve",
    "unshelve": "alarm.unshelve",
    "out_of_service": "alarm.out_of_service",
    "return_to_service": "alarm.return_to_service",
}
"""Operator action on an alarm -> ``users.yaml`` permission."""


def shelve_permission(duration_s: float) -> str:
    """The permission of a shelve request: ``duration_s`` <= 0 ends a shelve (unshelve)."""
    return ALARM_PERMISSIONS["unshelve"] if duration_s <= 0 else ALARM_PERMISSIONS["shelve"]
