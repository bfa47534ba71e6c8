"""Shelving and out-of-service of alarms: the GMP overlay on ISA-18.2 operator actions.

Shelving is time-limited (auto-unshelved on the injected clock) and, like taking an alarm
out of service, needs a reason and, when configured, an e-signature whose record hash covers
the request (21 CFR 11.70). Part of :class:`~.manager.AlarmManager` (a mixin; the manager
owns the alarms, the lock and the record).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aseptic_cell.records.canonical import content_hash, iso_utc

from .models import AlarmSettings
from .state import AlarmEntry, AlarmError, AlarmEvent, AlarmState, who

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping


class AlarmShelving:
    """Shelve / unshelve, out of service / return to service (mixed into the manager)."""

    _lock: threading.RLock
    settings: AlarmSettings

    if TYPE_CHECKING:

        def _emit(
            self,
            events: list[AlarmEvent],
            a: AlarmEntry,
            event: str,
            now: float,
            *,
            actor: str = "system",
            role: str = "",
            reason: str = "",
            extra: Mapping[str, Any] | None = None,
        ) -> None: ...

        def _get(self, alarm_id: str) -> AlarmEntry: ...

        def _housekeeping(self, now: float, events: list[AlarmEvent]) -> None: ...

        def _notify(self, events: list[AlarmEvent]) -> None: ...

        def _now(self) -> float: ...

        def _reannunciate(self, a: AlarmEntry, now: float, events: list[AlarmEvent]) -> None: ...

    def shelve_subject_hash(self, alarm_id: str, user: Any, reason: str, duration_s: float) -> str:
        """The hash an e-signature for this shelve request must cover (Part 11 §11.70)."""
        uid, _ = who(user)
        a = self._get(alarm_id)
        return content_hash(
            {
                "request": "alarm.shelve",
                "alarm_id": alarm_id,
                "user": uid,
                "reason": reason,
                "duration_s": float(duration_s),
                "occurrence": a.occurrence,
            }
        )

    def out_of_service_subject_hash(self, alarm_id: str, user: Any, reason: str) -> str:
        uid, _ = who(user)
        return content_hash(
            {
                "request": "alarm.out_of_service",
                "alarm_id": alarm_id,
                "user": uid,
                "reason": reason,
                "occurrence": self._get(alarm_id).occurrence,
            }
        )

    def shelve(
        self, alarm_id: str, user: Any, reason: str, duration_s: float, signature: Any = None
    ) -> AlarmState:
        """Shelve an alarm for ``duration_s`` (time-limited; auto-unshelved on the clock).

        Args:
            signature: an :class:`~aseptic_cell.auth.Signature` by ``user`` whose
                ``record_hash`` is :meth:`shelve_subject_hash` of this request; required when
                ``settings.shelve_requires_signature``.

        Raises:
            AlarmError: not shelvable, no reason, duration out of range, already shelved or out
                of service, missing / wrong / stale signature.
        """
        uid, role = who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not a.d.shelvable:
                raise AlarmError(f"alarm {alarm_id} may not be shelved (rationalised as not shelvable)")
            if not str(reason).strip():
                raise AlarmError("shelving needs a reason")
            cap = min(self.settings.max_shelve_s, a.d.max_shelve_s or math.inf)
            if not (
                isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and 0 < duration_s <= cap
            ):
                raise AlarmError(f"shelve duration must be > 0 and <= {cap:g} s, got {duration_s!r}")
            if a.oos:
                raise AlarmError(f"alarm {alarm_id} is out of service")
            if a.shelved_until is not None:
                raise AlarmError(f"alarm {alarm_id} is already shelved until {iso_utc(a.shelved_until)}")
            sig_payload = None
            if self.settings.shelve_requires_signature or signature is not None:
                sig_payload = self._check_signature(
                    signature,
                    uid,
                    now,
                    self.shelve_subject_hash(alarm_id, uid, reason, duration_s),
                    "shelving",
                )
            a.shelved_until, a.shelved_by, a.shelve_reason = now + float(duration_s), uid, str(reason)
            extra: dict[str, Any] = {
                "shelved_until": a.shelved_until,
                "shelved_until_iso": iso_utc(a.shelved_until),
                "duration_s": float(duration_s),
            }
            if sig_payload is not None:
                extra["signature"] = sig_payload
            self._emit(events, a, "shelved", now, actor=uid, role=role, reason=str(reason), extra=extra)
            state = a.state()
        self._notify(events)
        return state

    def unshelve(self, alarm_id: str, user: Any, reason: str = "") -> AlarmState:
        """End a shelve early."""
        uid, role = who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if a.shelved_until is None:
                raise AlarmError(f"alarm {alarm_id} is not shelved")
            self._unshelve(a, now, events, actor=uid, role=role, reason=reason or "unshelved by operator")
            state = a.state()
        self._notify(events)
        return state

    def remove_from_service(self, alarm_id: str, user: Any, reason: str, signature: Any = None) -> AlarmState:
        """Take an alarm out of service (maintenance, management of change; e-signature).

        Raises:
            AlarmError: no reason, or a missing / wrong / stale signature.
        """
        uid, role = who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not str(reason).strip():
                raise AlarmError("taking an alarm out of service needs a reason")
            if a.oos:
                raise AlarmError(f"alarm {alarm_id} is already out of service")
            extra: dict[str, Any] = {}
            if self.settings.out_of_service_requires_signature or signature is not None:
                extra["signature"] = self._check_signature(
                    signature,
                    uid,
                    now,
                    self.out_of_service_subject_hash(alarm_id, uid, reason),
                    "taking an alarm out of service",
                )
            a.oos, a.oos_by, a.oos_reason = True, uid, str(reason)
            a.shelved_until = None
            self._emit(
                events, a, "out_of_service", now, actor=uid, role=role, reason=str(reason), extra=extra
            )
            state = a.state()
        self._notify(events)
        return state

    def return_to_service(self, alarm_id: str, user: Any, reason: str = "") -> AlarmState:
        uid, role = who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not a.oos:
                raise AlarmError(f"alarm {alarm_id} is not out of service")
            a.oos = False
            self._emit(events, a, "returned_to_service", now, actor=uid, role=role, reason=str(reason))
            if a.active:
                self._reannunciate(a, now, events)
        self._notify(events)
        return a.state()

    def _unshelve(
        self, a: AlarmEntry, now: float, events: list[AlarmEvent], *, actor: str, role: str, reason: str
    ) -> None:
        a.shelved_until = None
        self._emit(events, a, "unshelved", now, actor=actor, role=role, reason=reason)
        if a.active:
            self._reannunciate(a, now, events)

    def _check_signature(
        self, signature: Any, uid: str, now: float, subject: str, what: str
    ) -> dict[str, Any]:
        if signature is None:
            raise AlarmError(f"{what} needs an e-signature (GMP overlay on ISA-18.2; 21 CFR 11.50 [CFR11])")
        sig_user = getattr(signature, "user_id", None)
        if sig_user != uid:
            raise AlarmError(f"the e-signature is by {sig_user!r}, not by {uid!r}")
        if getattr(signature, "record_hash", None) != subject:
            raise AlarmError("the e-signature does not cover this request (record hash differs)")
        signed_at = getattr(signature, "signed_at", None)
        if not isinstance(signed_at, (int, float)) or not (
            0 <= now - signed_at <= self.settings.signature_max_age_s
        ):
            raise AlarmError(
                f"the e-signature is stale or from the future "
                f"(max age {self.settings.signature_max_age_s:g} s)"
            )
        to_payload = getattr(signature, "to_payload", None)
        return dict(to_payload()) if callable(to_payload) else {"user_id": uid, "record_hash": subject}
