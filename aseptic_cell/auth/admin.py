"""User administration: add, disable, enable, reset a password, change a role, record a
qualification - by the user administrator only, each change e-signed and audited.

21 CFR 11.10(d),(g),(i), 11.300(a),(b) [CFR11]; EU GMP Annex 11 §12.1-12.3 (access granted,
changed and withdrawn by a defined procedure, recorded) [ANNEX11].

Rules (each refusal has a code):

* only role ``user_admin`` administers users (``users.yaml`` ``user.*`` actions, config-checked
  so that no production role holds them and the administrator holds nothing else);
* nobody administers their own account (SELF_ADMINISTRATION) - an administrator could
  otherwise re-qualify or re-enable themself;
* a role change never crosses the administrator / production boundary (ROLE_SEPARATION): the
  person gets a separate account, so one id never holds both;
* a user is never deleted, only disabled; an id is never reused, also case-insensitively
  (USER_EXISTS);
* a new account's and a reset password follow the password policy and must be changed at
  first use;
* every change is signed by the administrator (re-entered password, meaning from
  ``users.yaml``) over the SHA-256 of its exact content, which is stored with the signature in
  the store's append-only, hash-chained audit trail and written to the record path the
  directory already uses (the batch record when it has one, else the shared security log
  that the supervisor copies into the batch record).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from aseptic_cell.records.canonical import iso_utc

from .directory import AuthError, UserDirectory, action_class, record_signature
from .models import ADMIN_ROLE, ROLES
from .passwords import hash_password
from .policy import check_new_password
from .store import UserRow

ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]*$"


class AdminRefused(AuthError):
    """An administration request refused before anything changed; ``code`` names the rule."""


@dataclass(frozen=True)
class AdminResult:
    action: str
    target: str
    signature: dict[str, Any]
    audit_hash: str


def _subject(content: dict[str, Any]) -> tuple[str, str]:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


class UserAdmin:
    """Administration over a :class:`~aseptic_cell.auth.UserDirectory` (its live store)."""

    def __init__(self, directory: UserDirectory) -> None:
        self.d = directory

    # ------------------------------------------------------------------ helpers
    def _now(self) -> float:
        return float(self.d._clock.now())

    def _target(self, target: str) -> UserRow:
        row = self.d.store.user(target) if isinstance(target, str) else None
        if row is None:
            raise AdminRefused(f"UNKNOWN_USER: no user {target!r}", "UNKNOWN_USER")
        return row

    @staticmethod
    def _not_self(admin_id: str, target: str) -> None:
        if admin_id.casefold() == target.casefold():
            raise AdminRefused("SELF_ADMINISTRATION: nobody administers their own account "
                               "(a second administrator does; a password is changed with passwd)",
                               "SELF_ADMINISTRATION")

    def _apply(self, admin_id: str, password: str, action: str, target: str, detail: dict[str, Any],
               reason: str, change: Any) -> AdminResult:
        """Sign ``detail`` as ``action`` on ``target``, then apply ``change(con, now)`` and the
        audit row in one transaction, then write the signature to the record path."""
        if not isinstance(reason, str) or not reason.strip():
            raise AdminRefused("REASON_REQUIRED: every user administration change states its reason",
                               "REASON_REQUIRED")
        self._not_self(admin_id, target)
        rule = self.d.rule(action)
        content = {"action": action, "target": target, "reason": reason.strip(), **detail}
        text, digest = _subject(content)
        sig = self.d.sign(admin_id, password, rule.meaning or "responsibility", digest, action=action)
        payload = {**sig.to_payload(), "signed_content": text}
        now = self._now()

        def tx(con: Any) -> str:
            change(con, now)
            return self.d.store.append_audit(con, now, sig.user_id, action, target,
                                             {**detail, "reason": reason.strip()}, payload)

        h = str(self.d.store.tx(tx))
        record = self.d._record
        if record is not None:
            record_signature(record, sig, batch_id="", reason=reason.strip())
        self.d._audit(action, target, {"by": sig.user_id, "signature": payload, "audit_hash": h, **detail},
                      actor=sig.user_id, role=sig.role)
        if record is None:  # the shared security log; the supervisor copies it into the batch record
            try:
                self.d.guard.event(action, target, now, by=sig.user_id, signature=payload, audit_hash=h, **detail)
            except Exception:  # noqa: BLE001 - the store's audit row is already written
                pass
        return AdminResult(action, target, payload, h)

    def _check_role(self, role: str) -> None:
        if role not in ROLES:
            raise AdminRefused(f"UNKNOWN_ROLE: role {role!r} is not one of {', '.join(ROLES)}", "UNKNOWN_ROLE")

    # ------------------------------------------------------------------ operations
    def add(self, admin_id: str, password: str, *, user_id: str, full_name: str, role: str,
            initial_password: str, reason: str) -> AdminResult:
        """A new account, with an initial password it must change at first log-in and no
        qualification yet (``qualify`` grants them)."""
        import re

        if not isinstance(user_id, str) or not re.match(ID_PATTERN, user_id) or len(user_id) > 64:
            raise AdminRefused(f"INVALID_ID: user id {user_id!r} must match {ID_PATTERN} (64 characters at most)",
                               "INVALID_ID")
        if not isinstance(full_name, str) or not full_name.strip() or len(full_name) > 128:
            raise AdminRefused("INVALID_NAME: the full (printed) name is 1 to 128 characters", "INVALID_NAME")
        self._check_role(role)
        if any(u.id.casefold() == user_id.casefold() for u in self.d.store.users()):
            raise AdminRefused(f"USER_EXISTS: the id {user_id!r} exists or existed; ids are never reused "
                               "(21 CFR 11.300(a))", "USER_EXISTS")
        policy = self.d.config.policy
        check_new_password(policy, user_id, initial_password)
        new_hash = hash_password(initial_password, iterations=policy.hash_iterations)

        def change(con: Any, now: float) -> None:
            self.d.store.insert_user(con, UserRow(user_id, full_name.strip(), role, False, new_hash, now, True,
                                                  now, admin_id))

        return self._apply(admin_id, password, "user.add", user_id,
                           {"full_name": full_name.strip(), "role": role}, reason, change)

    def disable(self, admin_id: str, password: str, *, user_id: str, reason: str) -> AdminResult:
        row = self._target(user_id)
        if row.disabled:
            raise AdminRefused(f"NO_CHANGE: {user_id!r} is already disabled", "NO_CHANGE")
        return self._apply(admin_id, password, "user.disable", row.id, {}, reason, lambda con, now: con.execute(
            "UPDATE users SET disabled = 1 WHERE id = ?", (row.id,)))

    def enable(self, admin_id: str, password: str, *, user_id: str, reason: str) -> AdminResult:
        row = self._target(user_id)
        if not row.disabled:
            raise AdminRefused(f"NO_CHANGE: {user_id!r} is not disabled", "NO_CHANGE")
        return self._apply(admin_id, password, "user.enable", row.id, {}, reason, lambda con, now: con.execute(
            "UPDATE users SET disabled = 0 WHERE id = ?", (row.id,)))

    def reset_password(self, admin_id: str, password: str, *, user_id: str, new_password: str,
                       reason: str) -> AdminResult:
        """A temporary password, to be changed at the user's next log-in."""
        row = self._target(user_id)
        policy = self.d.config.policy
        check_new_password(policy, row.id, new_password, self.d.store.history(row.id, policy.password_history))
        new_hash = hash_password(new_password, iterations=policy.hash_iterations)
        return self._apply(admin_id, password, "user.reset_password", row.id, {"must_change": True}, reason,
                           lambda con, now: self.d.store.set_password(con, row.id, new_hash, now, True))

    def set_role(self, admin_id: str, password: str, *, user_id: str, role: str, reason: str) -> AdminResult:
        row = self._target(user_id)
        self._check_role(role)
        if role == row.role:
            raise AdminRefused(f"NO_CHANGE: {user_id!r} already has role {role!r}", "NO_CHANGE")
        if ADMIN_ROLE in (role, row.role):
            raise AdminRefused(
                f"ROLE_SEPARATION: {ADMIN_ROLE!r} and the production roles are kept apart; a person who "
                "needs the other function gets a separate account (Annex 11 §12)", "ROLE_SEPARATION")
        return self._apply(admin_id, password, "user.set_role", row.id, {"from": row.role, "role": role}, reason,
                           lambda con, now: con.execute("UPDATE users SET role = ? WHERE id = ?", (role, row.id)))

    def qualify(self, admin_id: str, password: str, *, user_id: str, classes: list[str], until: float,
                reason: str) -> AdminResult:
        """Record a training / qualification of ``user_id`` for action ``classes`` (``batch``,
        ``alarm``, ...: the first part of the ``users.yaml`` action names) until ``until`` (epoch s);
        an ``until`` in the past withdraws it."""
        row = self._target(user_id)
        known = sorted({action_class(a) for a in self.d.permissions})
        bad = [c for c in classes if c not in known]
        if not classes or bad:
            raise AdminRefused(f"UNKNOWN_CLASS: {', '.join(bad) or '(none given)'}; classes: {', '.join(known)}",
                               "UNKNOWN_CLASS")
        if not isinstance(until, float | int) or not math.isfinite(until):
            raise AdminRefused("INVALID_DATE: the qualification's expiry must be a date", "INVALID_DATE")

        def change(con: Any, now: float) -> None:
            for c in classes:
                self.d.store.qualify(con, row.id, c, float(until), admin_id, now)

        return self._apply(admin_id, password, "user.qualify", row.id,
                           {"classes": sorted(set(classes)), "until": iso_utc(float(until))}, reason, change)

    # ------------------------------------------------------------------ read-only
    def listing(self) -> list[dict[str, Any]]:
        """Every account (disabled ones too): role, status, password age, qualifications."""
        now = self._now()
        out = []
        for u in self.d.store.users():
            exp = self.d.password_expires_at(u.id)
            out.append({
                "id": u.id, "full_name": u.full_name, "role": u.role, "disabled": u.disabled,
                "must_change_password": u.must_change,
                "password_expires": iso_utc(exp) if exp is not None else None,
                "password_expired": exp is not None and now >= exp,
                "locked": self.d.is_locked(u.id),
                "qualifications": {c: {"until": iso_utc(t), "current": now < t}
                                   for c, t in self.d.store.qualifications(u.id).items()},
                "created": iso_utc(u.created_at), "created_by": u.created_by,
            })
        return out
