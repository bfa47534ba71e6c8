"""Bypass management of supervisor interlock rows, as IEC 61511-1 treats the bypass of a safety
function [IEC61511-1 §11.7.3, §16.2] [M]: a bypass is an exception, authorised, limited in time,
visible while it is active and recorded.

* only rows marked ``bypassable: true`` in ``config/interlocks.yaml`` (never a ``critical`` row:
  the door, decontamination and VHP rules can never be bypassed; the catalogue model refuses the
  combination);
* **requested** with a reason and a duration by one person (``bypass.request``, e-signed);
* **approved** by a second person (``bypass.approve``, e-signed, never the requester); only then
  is it active, for at most ``parameters.bypass_max_s``;
* while active, the supervisor signal ``cell.bypass_active`` is true and raises the standing
  alarm ``CELL_BYPASS_ACTIVE`` (alarms.yaml, a condition alarm); it returns to normal when the
  last bypass ends;
* **removed** automatically at expiry (checked on every signal refresh, so no later than the
  next tick) or earlier by hand (``bypass.remove``); both recorded;
* every action the engine allows only because of a bypass is recorded as such
  (``bypass_use``: the action, its arguments, the bypassed rule and clauses, the bypass id).

The device layer's hard interlocks are never bypassed by this: it acts on the supervisor's
rows only (ARCHITECTURE rule 3).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..results import CommandResult
from .signing import subject_hash

if TYPE_CHECKING:
    from ..interlocks import Decision, SignalTable
    from .core import Supervisor

ALARM_ID = "CELL_BYPASS_ACTIVE"
"""Raised through its alarms.yaml condition on ``cell.bypass_active``."""


@dataclass
class Bypass:
    id: str
    rule: str
    reason: str
    duration_s: float
    requested_by: str
    requested_t: float
    state: str = "REQUESTED"
    """REQUESTED -> ACTIVE -> EXPIRED | REMOVED; REQUESTED -> WITHDRAWN."""
    approved_by: str = ""
    approved_t: float = math.nan
    expires_t: float = math.nan
    ended_t: float = math.nan
    signatures: list[dict[str, Any]] = field(default_factory=list)
    uses: int = 0

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "state": self.state, "reason": self.reason,
                "requested_by": self.requested_by, "approved_by": self.approved_by,
                "expires_t": self.expires_t, "uses": self.uses, "signatures": list(self.signatures)}


class Bypasses:
    """The bypasses of one supervisor; installs itself as the engine's bypass source."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.items: dict[str, Bypass] = {}
        self._seq = itertools.count(1)
        sup.engine.bypass = self

    # ------------------------------------------------------------------ engine side
    def active_for(self, rule_id: str) -> str | None:
        """The id of the active bypass of ``rule_id`` (expired ones are ended first), or None."""
        now = self.sup.now()
        for b in self.items.values():
            if b.rule == rule_id and b.state == "ACTIVE":
                if now >= b.expires_t:
                    self._end(b, "EXPIRED", "system", "bypass time elapsed")
                    continue
                return b.id
        return None

    def used(self, decision: Decision, bypassed: list[tuple[str, str, str]]) -> None:
        """The engine allowed ``decision`` only because of these (rule, bypass id, clauses)."""
        for rule, bid, clauses in bypassed:
            b = self.items.get(bid)
            if b is not None:
                b.uses += 1
            payload = {"bypass": bid, "rule": rule, "args": dict(decision.args), "clauses": clauses,
                       "batch": self.sup.batch_id}
            self.sup.journal.audit("command", "system", f"{decision.action} under bypass",
                                   f"allowed under bypass {bid}", payload)

    # ------------------------------------------------------------------ requests
    def _refuse(self, user: str, what: str, code: str, why: str) -> CommandResult:
        self.sup.journal.batch_refusal(user if isinstance(user, str) and user else "unknown", what, code, why)
        return CommandResult.refuse(code, why)

    def _sign(self, user: str, rule: Any, action: str, password: str, meaning: str, content: dict[str, Any],
              reason: str) -> tuple[Any, CommandResult | None]:
        sup = self.sup
        sig, bad = sup.signing.sign_if_required(user, rule, password=password, meaning=meaning, action=action,
                                                subject=subject_hash(content), batch_id=sup.batch_id,
                                                reason=reason)
        if bad is None and sig is None:
            return None, CommandResult.refuse("SIGNATURE", f"{action} must be e-signed (users.yaml)")
        return sig, bad

    def request(self, rule_id: str, reason: str, duration_s: float, user: str, *, password: str = "",
                meaning: str = "") -> CommandResult:
        sup = self.sup
        perm, denied = sup.signing.authorize(user, "bypass.request")
        if denied is not None:
            return self._refuse(user, "bypass.request", denied.code, denied.reason)
        rule = next((r for r in sup.cfg.interlocks.rules if r.id == rule_id), None)
        if rule is None:
            return self._refuse(user, "bypass.request", "INVALID", f"unknown interlock rule {rule_id!r}")
        if not getattr(rule, "bypassable", False) or rule.severity == "critical":
            return self._refuse(user, "bypass.request", "NOT_BYPASSABLE",
                                f"{rule_id} ({rule.title}) is not bypassable (severity {rule.severity}); "
                                "critical door and decontamination rules never are")
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            return self._refuse(user, "bypass.request", "INVALID",
                                "a bypass needs a reason (why, and the compensating measure; at least 10 characters)")
        limit = float(sup.cfg.interlocks.parameters.get("bypass_max_s", 0.0))
        if (isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s)
                or not 0 < duration_s <= limit):
            return self._refuse(user, "bypass.request", "INVALID",
                                f"duration_s must be in (0, {limit:g}] s (interlocks.yaml bypass_max_s), "
                                f"got {duration_s!r}")
        if any(b.rule == rule_id and b.state in ("REQUESTED", "ACTIVE") for b in self.items.values()):
            return self._refuse(user, "bypass.request", "STATE", f"{rule_id} already has an open bypass")
        bid = f"BYP-{next(self._seq):04d}"
        content = {"bypass": bid, "rule": rule_id, "reason": reason, "duration_s": float(duration_s),
                   "user": user, "t": sup.now()}
        sig, bad = self._sign(user, perm, "bypass.request", password, meaning, content, reason)
        if bad is not None:
            return self._refuse(user, "bypass.request", bad.code, bad.reason)
        b = Bypass(bid, rule_id, reason.strip(), float(duration_s), user, sup.now())
        b.signatures.append({"user": user, "meaning": getattr(sig, "meaning", meaning), "action": "bypass.request"})
        self.items[bid] = b
        sup.journal.audit("command", user, "bypass.request", reason, {"bypass": bid, "rule": rule_id,
                                                                      "duration_s": b.duration_s})
        return CommandResult(True, "OK", f"bypass {bid} of {rule_id} requested; needs a second person's approval",
                             payload={"bypass": bid})

    def approve(self, bypass_id: str, user: str, *, password: str = "", meaning: str = "",
                reason: str = "") -> CommandResult:
        sup = self.sup
        perm, denied = sup.signing.authorize(user, "bypass.approve")
        if denied is not None:
            return self._refuse(user, "bypass.approve", denied.code, denied.reason)
        b = self.items.get(bypass_id)
        if b is None:
            return self._refuse(user, "bypass.approve", "INVALID", f"unknown bypass {bypass_id!r}")
        if b.state != "REQUESTED":
            return self._refuse(user, "bypass.approve", "STATE", f"bypass {bypass_id} is {b.state}")
        if user == b.requested_by:
            return self._refuse(user, "bypass.approve", "PERMISSION",
                                f"{user} requested {bypass_id}: a second person approves it")
        content = {"bypass": b.id, "rule": b.rule, "reason": b.reason, "duration_s": b.duration_s,
                   "requested_by": b.requested_by, "approved_by": user, "t": sup.now()}
        sig, bad = self._sign(user, perm, "bypass.approve", password, meaning, content, reason or b.reason)
        if bad is not None:
            return self._refuse(user, "bypass.approve", bad.code, bad.reason)
        now = sup.now()
        b.state, b.approved_by, b.approved_t, b.expires_t = "ACTIVE", user, now, now + b.duration_s
        b.signatures.append({"user": user, "meaning": getattr(sig, "meaning", meaning), "action": "bypass.approve"})
        sup.journal.audit("command", user, "bypass.approve", reason or b.reason,
                          {"bypass": b.id, "rule": b.rule, "expires_t": b.expires_t,
                           "requested_by": b.requested_by, "approved_by": user})
        self._annunciate()
        return CommandResult(True, "OK", f"bypass {b.id} of {b.rule} active until t={b.expires_t:.0f} s",
                             payload=b.view())

    def remove(self, bypass_id: str, user: str, reason: str = "") -> CommandResult:
        _perm, denied = self.sup.signing.authorize(user, "bypass.remove")
        if denied is not None:
            return self._refuse(user, "bypass.remove", denied.code, denied.reason)
        b = self.items.get(bypass_id)
        if b is None:
            return self._refuse(user, "bypass.remove", "INVALID", f"unknown bypass {bypass_id!r}")
        if b.state not in ("REQUESTED", "ACTIVE"):
            return self._refuse(user, "bypass.remove", "STATE", f"bypass {bypass_id} is {b.state}")
        self._end(b, "REMOVED" if b.state == "ACTIVE" else "WITHDRAWN", user, reason or "removed")
        return CommandResult(True, "OK", f"bypass {bypass_id} ended")

    # ------------------------------------------------------------------ expiry, alarm
    def active(self) -> list[Bypass]:
        return [b for b in self.items.values() if b.state == "ACTIVE"]

    def publish(self, table: SignalTable, t: float) -> None:
        """Called on every signal refresh: end the bypasses whose time is up."""
        for b in self.active():
            if t >= b.expires_t:
                self._end(b, "EXPIRED", "system", "bypass time elapsed")
        table.update("cell.bypass_active", bool(self.active()), t, "supervisor")

    def _end(self, b: Bypass, state: str, user: str, reason: str) -> None:
        b.state, b.ended_t = state, self.sup.now()
        self.sup.journal.audit("command", user, f"bypass.{state.lower()}", reason,
                               {"bypass": b.id, "rule": b.rule, "uses": b.uses})
        self._annunciate()

    def _annunciate(self) -> None:
        self.sup.signals.update("cell.bypass_active", bool(self.active()), self.sup.now(), "supervisor")
