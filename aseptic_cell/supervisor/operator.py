"""Operator actions outside the recipe: device commands (role check, e-signature where
users.yaml requires it, then the interlock engine), signed recovery of a latched device,
alarm acknowledgement and shelving. Every refusal is recorded with its code and reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..alarms.permissions import ALARM_PERMISSIONS, shelve_permission
from ..batch.states import PhaseState as S
from ..results import CommandResult
from .actions import SAFE_COMMANDS, classify
from .bypass import Bypasses
from .deviations import Deviations, GloveVisualChecks
from .port import Handle
from .signing import subject_hash

if TYPE_CHECKING:
    from ..interlocks import SignalTable
    from .core import Supervisor


SUPERVISOR_COMMANDS = ("bypass.request <rule> <duration_s>", "bypass.approve <id>", "bypass.remove <id>",
                       "deviation.raise <rule>", "deviation.approve <id>")
"""Commands of the supervisor itself on ``/cell/batch/command`` (see ``supervisor_command``)."""


def is_supervisor_command(command: Any) -> bool:
    return isinstance(command, str) and command.split(" ", 1)[0] in {c.split()[0] for c in SUPERVISOR_COMMANDS}


class OperatorCommands:
    """The operator's device and alarm actions of one supervisor."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.gloves = GloveVisualChecks(sup)
        self.deviations = Deviations(sup)
        self.bypasses = Bypasses(sup)

    def publish(self, table: SignalTable, t: float) -> None:
        """The supervisor's own signals from recorded inputs (visual glove checks, deviations)."""
        self.gloves.publish(table, t)
        self.deviations.publish(table, t)
        self.bypasses.publish(table, t)

    def refuse(self, user: Any, node: str, command: str, args: Mapping[str, Any], code: str, why: str
               ) -> CommandResult:
        """Record an operator command's refusal and return it."""
        self.sup.journal.refusal(user if isinstance(user, str) and user else "unknown", node, command, args,
                                 code, why, source="operate")
        return CommandResult.refuse(code, why)

    def operate(self, node: str, command: str, args: Mapping[str, Any] | None, user: str, reason: str = "",
                *, password: str = "", meaning: str = "") -> tuple[CommandResult, Handle | None]:
        """Operator device command: role check + interlock engine, then forwarded to the device.

        Returns the outcome of the checks and, when forwarded, the device's handle (poll
        ``handle.done``). Refusals are recorded.
        """
        sup = self.sup
        args = dict(args or {})
        if node not in sup.port.node_devices:  # every device node the cell hosts (process equipment too)
            return self.refuse(user, node, command, args, "INVALID",
                               f"unknown device node {node!r}; known: {list(sup.port.node_devices)}"), None
        if node == "isolator" and command == "record_visual_check":  # a recorded input, not a device command
            return self.gloves.record(str(args.get("port", "")), str(args.get("result", "")), user, reason), None
        if node == "isolator" and command == "dock_beta":  # sterility from the container's own data
            from .containers import sterility

            status, why = sterility(sup, str(args.get("beta_id", "")))
            claimed = args.get("sterile_status")
            if status is None:
                return self.refuse(user, node, command, args, "BETA_NOT_STERILE", f"not docked: {why}"), None
            if claimed not in (None, "", status):
                why = f"not docked: the operator reports {claimed!r}; its record says {status} ({why})"
                return self.refuse(user, node, command, args, "BETA_NOT_STERILE", why), None
            args["sterile_status"] = status
            reason = f"{reason}; {why}".strip("; ")
        g = classify(node, command, args)
        if node == "arm" and command in ("move_to_pose", "execute_trajectory"):
            # a manual move passes every glove port too (IL-09: port free or reduced speed),
            # as a recipe's robot task does (behaviors.trees.motion_checks)
            g = replace(g, checks=g.checks + tuple(("arm.move_near_port", {"port": p.id})
                                                   for p in sup.cfg.layout.isolator.glove_ports))
        who = sup.users.get(user) if isinstance(user, str) else None
        if who is None or who.disabled:
            return self.refuse(user, node, command, args, "PERMISSION", f"unknown or disabled user {user!r}"), None
        if g.permission is not None:
            rule, denied = sup.signing.authorize(user, g.permission)
            if denied is not None:
                return self.refuse(user, node, command, args, denied.code, denied.reason), None
            _sig, bad = sup.signing.sign_if_required(
                user, rule, password=password, meaning=meaning, action=g.permission,
                subject=subject_hash([node, command, args, user, reason, sup.now()]), batch_id=sup.batch_id,
                reason=reason, missing=f"{g.permission} needs an e-signature (IL-13, 21 CFR 11.50 [CFR11]); "
                                       "/cell/operate carries no password: use the HMI sign dialog")
            if bad is not None:
                return self.refuse(user, node, command, args, bad.code, bad.reason), None
        ok, why = sup.check(g.checks)
        if not ok:
            return self.refuse(user, node, command, args, "INTERLOCK", why), None
        h = sup.port.send(node, command, args, user=user, reason=reason)
        sup.journal.command(node, command, user, sup.wall(), (node, command) in SAFE_COMMANDS)
        return CommandResult(True, "FORWARDED", "checks passed; forwarded to the device"), h

    def supervisor_command(self, command: str, user: str, password: str = "", meaning: str = "",
                           reason: str = "") -> CommandResult:
        """Bypass and deviation actions as they arrive over ``/cell/batch/command`` (the HMI):
        ``bypass.request <rule> <duration_s>``, ``bypass.approve <id>``, ``bypass.remove <id>``,
        ``deviation.raise <rule>``, ``deviation.approve <id>``; the reason, password and meaning are
        the request's own fields. Malformed: INVALID, recorded."""
        parts = command.split() if isinstance(command, str) else []
        verb, rest = (parts[0], parts[1:]) if parts else ("", [])
        byp, devs = self.bypasses, self.deviations
        if verb == "bypass.request" and len(rest) == 2:
            try:
                duration = float(rest[1])
            except ValueError:
                duration = math.nan
            return byp.request(rest[0], reason, duration, user, password=password, meaning=meaning)
        if verb == "bypass.approve" and len(rest) == 1:
            return byp.approve(rest[0], user, password=password, meaning=meaning, reason=reason)
        if verb == "bypass.remove" and len(rest) == 1:
            return byp.remove(rest[0], user, reason)
        if verb == "deviation.raise" and len(rest) == 1:
            return devs.raise_(rest[0], reason, user)
        if verb == "deviation.approve" and len(rest) == 1:
            return devs.approve(rest[0], user, password, meaning, reason)
        why = (f"malformed supervisor command {command!r}; expected one of: " + ", ".join(SUPERVISOR_COMMANDS))
        self.sup.journal.batch_refusal(user if isinstance(user, str) else "unknown", str(command)[:64], "INVALID", why)
        return CommandResult.refuse("INVALID", why)

    def recover_device(self, node: str, user: str, password: str = "", meaning: str = "", reason: str = ""
                       ) -> tuple[CommandResult, Handle | None]:
        """An operator's recovery of one latched device outside a batch restart (HMI, ``/cell/recover``).

        Releasing a device that an interlock or a communication loss made safe is a critical
        action: users.yaml ``device.recover`` (role, e-signature with meaning, stated reason).
        Refused while a batch is Running or Restarting (its devices are not latched then, or the
        signed restart is already recovering them). Returns the outcome of the checks and, when
        sent, the device's handle (poll ``handle.done``). Refusals are recorded.
        """
        sup = self.sup

        def refuse(code: str, why: str) -> tuple[CommandResult, None]:
            return self.refuse(user, node, "recover", {}, code, why), None

        if node not in sup.port.node_devices:
            return refuse("INVALID", f"unknown device node {node!r}; known: {list(sup.port.node_devices)}")
        rule, denied = sup.signing.authorize(user, "device.recover")
        if denied is not None:
            return refuse(denied.code, denied.reason)
        if not isinstance(reason, str) or not reason.strip():
            return refuse("INVALID", "a recovery needs a stated reason (what was found and put right)")
        if sup.sm.state in (S.RUNNING, S.RESTARTING):
            return refuse("STATE", f"the batch is {sup.sm.state.value}: hold it first (a signed restart "
                                   "recovers the latched devices)")
        if not sup.port.latched(node):
            return refuse("STATE", f"{node} is not latched: nothing to recover")
        _sig, bad = sup.signing.sign_if_required(
            user, rule, password=password, meaning=meaning, action="device.recover",
            subject=subject_hash({"batch": sup.batch_id, "recover": node, "user": user, "reason": reason,
                                  "t": sup.now()}),
            batch_id=sup.batch_id, reason=reason)
        if bad is not None:
            return refuse(bad.code, bad.reason)
        return CommandResult(True, "FORWARDED", f"recovery of {node} sent"), sup.recover(node, user, reason)

    def acknowledge_alarm(self, alarm_id: str, user: str, comment: str = "") -> CommandResult:
        from ..alarms import AlarmError

        sup = self.sup
        _rule, denied = sup.signing.authorize(user, ALARM_PERMISSIONS["acknowledge"])
        if denied is not None:
            return CommandResult.refuse("REFUSED", denied.reason)
        try:
            sup.alarms.acknowledge(alarm_id, sup.users.get(user) or user, comment)
        except (AlarmError, KeyError, ValueError) as exc:
            return CommandResult.refuse("REFUSED", str(exc).strip("'\""))
        return CommandResult(True, "OK", "acknowledged")

    def shelve_alarm(self, alarm_id: str, user: str, password: str = "", meaning: str = "", reason: str = "",
                     duration_s: float = 0.0) -> CommandResult:
        """Shelve an alarm for ``duration_s`` (ISA-18.2 §11.3 [ISA18.2]; users.yaml ``alarm.shelve``:
        supervisor, e-signed, with a reason; only alarms rationalised as shelvable, at most
        ``max_shelve_s``), or end a shelve early with ``duration_s`` <= 0 (users.yaml
        ``alarm.unshelve``, no signature: the alarm becomes visible again). The permission comes
        from :data:`aseptic_cell.alarms.permissions.ALARM_PERMISSIONS`, as in the HMI. The alarm
        manager records both."""
        from ..alarms import AlarmError

        sup = self.sup
        if not isinstance(duration_s, (int, float)) or math.isnan(duration_s):
            return CommandResult.refuse("INVALID", f"duration_s must be a number, got {duration_s!r}")
        rule, denied = sup.signing.authorize(user, shelve_permission(float(duration_s)))
        if denied is not None:
            return denied
        who = sup.users.get(user) or user
        try:
            if duration_s <= 0:
                sup.alarms.unshelve(alarm_id, who, reason)
                return CommandResult(True, "OK", f"{alarm_id} unshelved")
            signature = None
            if rule.signature:
                if not password:
                    return CommandResult.refuse("SIGNATURE",
                                                "alarm.shelve needs an e-signature (password and meaning)")
                # signed first, recorded only once the shelve is accepted
                subject = sup.alarms.shelve_subject_hash(alarm_id, who, reason, float(duration_s))
                signature, bad = sup.signing.sign_if_required(
                    user, rule, password=password, meaning=meaning, action="alarm.shelve",
                    subject=subject, batch_id=sup.batch_id, reason=reason, record=False)
                if bad is not None:
                    return bad
            sup.alarms.shelve(alarm_id, who, reason, float(duration_s), signature=signature)
        except (AlarmError, KeyError) as exc:
            return CommandResult.refuse("REFUSED", str(exc).strip("'\""))
        if signature is not None:
            sup.signing.record_signature(signature, batch_id=sup.batch_id, reason=reason)
        return CommandResult(True, "OK", f"{alarm_id} shelved for {float(duration_s):g} s")
