"""Recorded operator inputs the interlocks read, and the deviation record they may need.

* :class:`GloveVisualChecks` — the operator's visual check of a glove before use (Annex 1 §4.24
  [ANNEX1-2022] [M]: inspect visually at every use); each check is recorded; it publishes
  ``isolator.glove.<port>.visual_defect`` and ``...visual_check_age_h`` (IL-05, IL-05B).
* :class:`Deviations` — a deviation raised against the running batch (who, why, which rule it
  concerns) and approved by QA with an e-signature (``deviation.close``, meaning approval), over
  ``/cell/batch/command``. The IL-06 path uses it (a batch whose end-of-batch glove test failed
  or never ran closes its record only through an approved deviation, EU GMP Ch. 1 §1.4(xiv)
  [EUGMP-CH1] [M]). Its entries have the shape :mod:`aseptic_cell.disposition` reads: the full
  lifecycle (class, investigation, root cause), the automatic deviations and the QA disposition
  work there, on the record, also after the batch ended.

Neither talks to a device; both record through the supervisor's journal and signing helper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..results import CommandResult
from .signing import subject_hash

if TYPE_CHECKING:
    from ..interlocks import SignalTable
    from .core import Supervisor

VISUAL_RESULTS = ("no_defect", "defect")


class GloveVisualChecks:
    """The latest recorded visual check per glove port."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.last: dict[str, dict[str, Any]] = {}
        self.defect: dict[str, bool] = {}

    def ports(self) -> list[str]:
        return [g.id for g in self.sup.cfg.layout.isolator.glove_ports]

    def record(self, port: str, result: str, user: str, comment: str = "") -> CommandResult:
        """Record an operator's visual check of ``port``'s glove and sleeve (``glove.use`` role).

        A defect blocks the port (IL-05) until a later check finds none; that later check is
        accepted only after an integrity test that PASSed after the defect was recorded (the
        glove was changed or proven tight)."""
        sup = self.sup
        if port not in self.ports():
            return CommandResult.refuse("INVALID", f"unknown glove port {port!r}; ports are {self.ports()}")
        if result not in VISUAL_RESULTS:
            return CommandResult.refuse("INVALID", f"result must be one of {list(VISUAL_RESULTS)}, got {result!r}")
        _rule, denied = sup.signing.authorize(user, "glove.use")
        if denied is not None:
            return denied
        now = sup.now()
        if result == "no_defect" and self.defect.get(port):
            since = self.last[port]["t"]
            age = sup.signal(f"isolator.glove.{port}.test_age_h")
            passed = sup.signal(f"isolator.glove.{port}.last_test") == "PASS"
            if not (passed and isinstance(age, (int, float)) and now - age * 3600.0 >= since):
                return CommandResult.refuse(
                    "STATE", f"glove {port} has a recorded defect: replace it and pass an integrity test first")
        entry = {"port": port, "result": result, "user": user, "t": now, "comment": comment}
        self.last[port] = entry
        self.defect[port] = result == "defect"
        sup.journal.audit("glove_test", user, f"glove.{port}.visual_check", comment or result, entry)
        self.publish(sup.signals, now)
        return CommandResult(True, "OK", f"visual check of {port} recorded: {result}")

    def publish(self, table: SignalTable, t: float) -> None:
        for port in self.ports():
            table.update(f"isolator.glove.{port}.visual_defect", bool(self.defect.get(port, False)), t, "supervisor")
            last = self.last.get(port)
            if last is None:
                table.remove(f"isolator.glove.{port}.visual_check_age_h")
            else:
                table.update(f"isolator.glove.{port}.visual_check_age_h", max(0.0, (t - last["t"]) / 3600.0), t,
                             "supervisor")


@dataclass
class Deviation:
    id: str
    batch_id: str
    rule: str
    """The interlock row it concerns (``IL-06``), or ``""``."""
    description: str
    raised_by: str
    raised_t: float
    state: str = "OPEN"
    approved_by: str = ""
    approved_t: float = math.nan
    signature: dict[str, Any] = field(default_factory=dict)


class Deviations:
    """Deviations of the current batch: raise (``deviation.raise``), approve (``deviation.close``,
    QA, e-signed, never the person who raised it)."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.items: dict[str, Deviation] = {}
        journal = getattr(getattr(sup, "main", None), "journal", None)
        root = getattr(getattr(sup, "cfg", None), "root", None)
        if journal is not None and journal.auto is not None and root is not None:
            from ..disposition.deviations import DeviationPolicy

            try:  # the classes of this cell's configuration (config/deviations.yaml)
                journal.auto.policy = DeviationPolicy.load(root)
            except (OSError, ValueError):
                pass  # the journal keeps the policy it loaded (a bad file was logged there)

    def _refuse(self, user: str, what: str, code: str, why: str) -> CommandResult:
        self.sup.journal.batch_refusal(user, what, code, why)
        return CommandResult.refuse(code, why)

    def raise_(self, rule: str, description: str, user: str) -> CommandResult:
        sup = self.sup
        _r, denied = sup.signing.authorize(user, "deviation.raise")
        if denied is not None:
            return self._refuse(user, "deviation.raise", denied.code, denied.reason)
        if not sup.batch_id:
            return self._refuse(user, "deviation.raise", "STATE", "no batch: a deviation is raised against a batch")
        if not isinstance(description, str) or len(description.strip()) < 10:
            return self._refuse(user, "deviation.raise", "INVALID",
                                "a deviation needs a description (what happened, at least 10 characters)")
        if rule == "IL-06" and not self.end_glove_test_missing():
            return self._refuse(user, "deviation.raise", "STATE",
                                "IL-06: the end-of-batch glove test passed; there is nothing to deviate from")
        dev = Deviation(f"DEV-{sup.batch_id}-{len(self.items) + 1:03d}", sup.batch_id, rule, description.strip(),
                        user, sup.now())
        self.items[dev.id] = dev
        sup.journal.audit("deviation", user, "deviation.raise", dev.description,
                          {"deviation": dev.id, "rule": rule, "batch": dev.batch_id})
        return CommandResult(True, "OK", f"deviation {dev.id} raised", payload={"deviation": dev.id})

    def approve(self, dev_id: str, user: str, password: str, meaning: str, reason: str) -> CommandResult:
        sup = self.sup
        rule, denied = sup.signing.authorize(user, "deviation.close")
        if denied is not None:
            return self._refuse(user, "deviation.close", denied.code, denied.reason)
        dev = self.items.get(dev_id)
        if dev is None:
            return self._refuse(user, "deviation.close", "INVALID", f"unknown deviation {dev_id!r}")
        if dev.state != "OPEN":
            return self._refuse(user, "deviation.close", "STATE", f"deviation {dev_id} is {dev.state}")
        if user == dev.raised_by:
            return self._refuse(user, "deviation.close", "PERMISSION",
                                f"{user} raised {dev_id}: a second person approves it")
        if not isinstance(reason, str) or not reason.strip():
            return self._refuse(user, "deviation.close", "INVALID", "the approval needs a stated assessment")
        sig, bad = sup.signing.sign_if_required(
            user, rule, password=password, meaning=meaning, action="deviation.close",
            subject=subject_hash({"deviation": dev.id, "batch": dev.batch_id, "rule": dev.rule,
                                  "description": dev.description, "reason": reason}),
            batch_id=dev.batch_id, reason=reason)
        if bad is not None:
            return self._refuse(user, "deviation.close", bad.code, bad.reason)
        if sig is None:
            return self._refuse(user, "deviation.close", "SIGNATURE", "deviation.close must be e-signed (users.yaml)")
        dev.state, dev.approved_by, dev.approved_t = "APPROVED", user, sup.now()
        dev.signature = {"user": user, "meaning": getattr(sig, "meaning", meaning)}
        sup.journal.audit("deviation", user, "deviation.close", reason,
                          {"deviation": dev.id, "rule": dev.rule, "state": dev.state})
        self.publish(sup.signals, sup.now())
        return CommandResult(True, "OK", f"deviation {dev.id} approved")

    def end_glove_test_missing(self) -> bool:
        return not self.sup.signal("batch.end_glove_test_done")

    def approved_for(self, rule: str) -> bool:
        bid = self.sup.batch_id
        return any(d.rule == rule and d.batch_id == bid and d.state == "APPROVED" for d in self.items.values())

    def publish(self, table: SignalTable, t: float) -> None:
        table.update("batch.end_glove_test_deviation_approved", self.approved_for("IL-06"), t, "supervisor")
