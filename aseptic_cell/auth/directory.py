"""User directory: authentication with lock-out, authority checks and e-signatures.

Part 11 §11.10(d) (limit access to authorised individuals), §11.10(g) (authority checks),
§11.50 (signature manifestation), §11.70 (signature linked to its record), §11.200
(two components - user id and password - re-entered on every signing), §11.300 (password
controls, lock-out, reporting attempts at unauthorised use).
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from pydantic import ValidationError

from aseptic_cell.records.canonical import is_sha256_hex, iso_utc

from ._yaml import load_yaml_strict
from .lockout import Locked, LoginGuard
from .models import ADMIN_ACTIONS, ADMIN_ROLE, MEANINGS, QUALIFICATION_EXEMPT, ActionRule, UsersFile
from .passwords import parse_hash, verify_password
from .store import UserRow, UserStore

if TYPE_CHECKING:
    from aseptic_cell.records import BatchRecord, Entry

log = logging.getLogger(__name__)

GENERIC_FAILURE = "invalid user id or password"
"""Same text for an unknown user and a wrong password (no user enumeration)."""


class Clock(Protocol):
    def now(self) -> float: ...


class AuthError(Exception):
    """Authentication or authorisation refused; ``reason`` is safe to show to the operator,
    ``code`` is a stable name of the refusal."""

    def __init__(self, reason: str, code: str = "AUTH") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class PasswordChangeRequired(AuthError):
    """The password was right but has expired (``PASSWORD_EXPIRED``) or is an initial / reset
    one (``PASSWORD_CHANGE_REQUIRED``): the account may only change it (Part 11 §11.300(b))."""


class PermissionDenied(AuthError):
    """The user may not perform the action: ``code`` PERMISSION (role), NOT_QUALIFIED or
    QUALIFICATION_EXPIRED (training, §11.10(i))."""

    def __init__(self, reason: str, *, role: str, action: str, code: str = "PERMISSION") -> None:
        super().__init__(reason, code)
        self.role = role
        self.action = action


def action_class(action: str) -> str:
    """The training class of an action: its first name part (``batch.start`` -> ``batch``)."""
    return action.split(".", 1)[0]


def role_classes(config: UsersFile, role: str) -> set[str]:
    """The action classes a role's permitted actions need a qualification for."""
    return {action_class(a) for a, rule in config.permissions.items()
            if role in rule.roles and a not in QUALIFICATION_EXEMPT}


class UsersFileError(ValueError):
    """``users.yaml`` is malformed or invalid."""


@dataclass(frozen=True)
class User:
    """An authenticated (or looked-up) user. Carries no secret."""

    id: str
    full_name: str
    role: str
    disabled: bool = False


@dataclass(frozen=True)
class Signature:
    """An executed electronic signature (Part 11 §11.50, §11.70).

    ``record_hash`` is the SHA-256 of the content it covers (e.g. an entry hash, a release
    summary, a shelve request), which links the signature to exactly that content.
    """

    user_id: str
    full_name: str
    role: str
    meaning: str
    record_hash: str
    signed_at: float
    signed_at_iso: str
    action: str = ""

    def to_payload(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "full_name": self.full_name,
            "role": self.role,
            "meaning": self.meaning,
            "record_hash": self.record_hash,
            "signed_at": self.signed_at,
            "signed_at_iso": self.signed_at_iso,
            "action": self.action,
        }

    def manifest(self) -> str:
        """Printed form: name, date/time (UTC) and meaning."""
        return (
            f"Signed by {self.full_name} ({self.user_id}, {self.role}) on {self.signed_at_iso} "
            f"- meaning: {self.meaning.upper()}"
        )


def record_signature(record: BatchRecord, signature: Signature, *, batch_id: str, reason: str = "") -> Entry:
    """Append ``signature`` to the batch record as a kind ``signature`` entry."""
    return record.append(
        "signature",
        batch_id=batch_id,
        actor=signature.user_id,
        role=signature.role,
        action=signature.action or f"sign.{signature.meaning.replace(' ', '_')}",
        reason=reason,
        payload=signature.to_payload(),
    )


class UserDirectory:
    """Users and permissions from ``config/users.yaml``.

    Args:
        config: the validated file.
        clock: injected clock (lock-out windows, signature times).
        record: optional batch record; failed log-ins and lock-outs are written to it as
            kind ``auth`` (cell-level, ``batch_id=""``), never with the password.
        guard: the lock-out store (:class:`~.lockout.LoginGuard`); the cell's processes pass
            the shared one (``LoginGuard.shared``: one file for every interface, persistent);
            default an in-memory guard of this directory only.
    """

    def __init__(self, config: UsersFile, clock: Clock, record: BatchRecord | None = None,
                 guard: LoginGuard | None = None) -> None:
        self.config = config
        self._clock = clock
        self._record = record
        self._dummy: str | None = None
        self.store = UserStore(None)
        self.guard = guard if guard is not None else LoginGuard(None, config.policy)

    @property
    def guard(self) -> LoginGuard:
        return self._guard

    @guard.setter
    def guard(self, guard: LoginGuard) -> None:
        """Setting the lock-out store also binds the live user store beside it (the shared
        ``users.db`` of the cell when the guard is the shared ``auth.db``; in memory otherwise),
        seeded from the configuration on first start."""
        self._guard = guard
        self.store = UserStore.beside(guard.path) if guard.path != ":memory:" else self.store
        self.seed()

    def seed(self) -> list[str]:
        """Import the configuration's users that the store does not hold (all of them on first
        start; later ones only while ``policy.import_new_config_users``); each import is an
        audit row ``user.seed`` by actor ``config``. Existing users are not changed here, except
        that a seeded user still holding its file role is qualified once for an action class new
        to that role (a permission added to the file later; audit row ``user.seed_qualification``)
        - a class with any row, current, expired or withdrawn, is left alone. Returns the imported
        ids."""
        now = float(self._clock.now())
        policy = self.config.policy
        rows = self.store.users()
        known = {u.id.casefold() for u in rows}
        if known and not policy.import_new_config_users:
            return []
        todo = [u for u in self.config.users if u.id.casefold() not in known]
        expires = now + policy.initial_qualification_days * 86400.0
        # a class new to a seeded user's role (a permission added to the file later) is granted
        # once, like at seeding; a class with any row (current, expired or withdrawn) is left alone
        file_role = {u.id: u.role for u in self.config.users}
        topup = [(u, sorted(role_classes(self.config, u.role) - set(self.store.qualifications(u.id))))
                 for u in rows if u.created_by == "config" and file_role.get(u.id) == u.role]
        topup = [(u, classes) for u, classes in topup if classes]
        if not todo and not topup:
            return []

        def tx(con: Any) -> None:
            for row, wanted in topup:
                classes = [c for c in wanted if not con.execute(  # not granted meanwhile by another process
                    "SELECT 1 FROM qualifications WHERE user = ? AND action_class = ?", (row.id, c)).fetchone()]
                if not classes:
                    continue
                for c in classes:
                    self.store.qualify(con, row.id, c, expires, "config", now)
                self.store.append_audit(con, now, "config", "user.seed_qualification", row.id,
                                        {"qualified": classes, "qualified_until": iso_utc(expires)}, None)
            for u in todo:
                if con.execute("SELECT 1 FROM users WHERE id = ?", (u.id,)).fetchone():
                    continue  # another process seeded it meanwhile
                self.store.insert_user(con, UserRow(u.id, u.full_name, u.role, u.disabled, u.password_hash,
                                                    now, u.must_change_password, now, "config"))
                classes = sorted(role_classes(self.config, u.role))
                for c in classes:
                    self.store.qualify(con, u.id, c, expires, "config", now)
                self.store.append_audit(con, now, "config", "user.seed", u.id,
                                        {"full_name": u.full_name, "role": u.role, "disabled": u.disabled,
                                         "qualified": classes, "qualified_until": iso_utc(expires)}, None)

        self.store.tx(tx)
        return [u.id for u in todo]

    @property
    def _dummy_hash(self) -> str:
        """Checked when the user id is unknown, so both paths cost one full PBKDF2 run.

        Random salt and digest in the stored format: nothing verifies against it, and making
        it costs no PBKDF2 run.
        """
        if self._dummy is None:
            salt, digest = secrets.token_bytes(16), secrets.token_bytes(32)
            self._dummy = (
                f"pbkdf2_sha256${self._typical_iterations()}$"
                f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
            )
        return self._dummy

    def _typical_iterations(self) -> int:
        its = [parse_hash(u.password_hash)[0] for u in self.store.users()]
        return max(its) if its else self.config.policy.min_iterations

    @classmethod
    def from_file(cls, path: str | Path, clock: Clock, record: BatchRecord | None = None,
                  guard: LoginGuard | None = None) -> UserDirectory:
        """Load and validate ``users.yaml``.

        Raises:
            UsersFileError: malformed YAML or a validation problem (message names the file).
        """
        try:
            data = load_yaml_strict(path)
        except yaml.YAMLError as exc:
            raise UsersFileError(f"{path}: malformed YAML: {exc}") from exc
        except OSError as exc:
            raise UsersFileError(f"{path}: cannot read: {exc}") from exc
        try:
            config = UsersFile.model_validate(data)
        except ValidationError as exc:
            raise UsersFileError(f"{path}: {exc}") from exc
        return cls(config, clock, record, guard)

    # ------------------------------------------------------------------ look-ups
    def get(self, user_id: str) -> User | None:
        u = self.store.user(user_id) if isinstance(user_id, str) else None
        return User(u.id, u.full_name, u.role, u.disabled) if u else None

    def users(self) -> list[User]:
        """Every account ever created, disabled ones included (ids are never reused)."""
        return [User(u.id, u.full_name, u.role, u.disabled) for u in self.store.users()]

    def password_expires_at(self, user_id: str) -> float | None:
        """When the user's password expires (None: no ageing or unknown user)."""
        u = self.store.user(user_id)
        days = self.config.policy.max_password_age_days
        return None if u is None or days <= 0 else u.password_set_at + days * 86400.0

    @property
    def permissions(self) -> Mapping[str, ActionRule]:
        return self.config.permissions

    def rule(self, action: str) -> ActionRule:
        """The permission rule of ``action``.

        Raises:
            PermissionDenied: the action is not in the catalogue (deny by default).
        """
        rule = self.config.permissions.get(action)
        if rule is None:
            raise PermissionDenied(
                f"action {action!r} is not in the permission catalogue; refused", role="", action=action
            )
        return rule

    def requires_signature(self, action: str) -> bool:
        return self.rule(action).signature

    # ------------------------------------------------------------------ authentication
    def authenticate(self, user_id: str, password: str) -> User:
        """Check user id and password.

        Raises:
            AuthError: unknown user or wrong password (same message), account locked after
                too many failures, or account disabled.
            PasswordChangeRequired: right password, but expired or initial: change it first.
        """
        user, row = self._check_password(user_id, password)
        now = float(self._clock.now())
        if row.must_change:
            self._audit("auth.refused_change_required", row.id, {})
            raise PasswordChangeRequired(
                f"PASSWORD_CHANGE_REQUIRED: the password of {row.id!r} is an initial or reset one; "
                "change it before anything else (cellctl users passwd, or the HMI log-in page)",
                "PASSWORD_CHANGE_REQUIRED")
        expires = self.password_expires_at(row.id)
        if expires is not None and now >= expires:
            self._audit("auth.refused_password_expired", row.id, {"expired": iso_utc(expires)})
            raise PasswordChangeRequired(
                f"PASSWORD_EXPIRED: the password of {row.id!r} expired on {iso_utc(expires)}; "
                "change it before anything else (cellctl users passwd, or the HMI log-in page)",
                "PASSWORD_EXPIRED")
        return user

    def change_password(self, user_id: str, old_password: str, new_password: str) -> User:
        """The user changes their own password (also when it has expired or must be changed):
        the old one is checked like a log-in (lock-out counts), the new one against the policy
        and the history. Audited (``auth.password_changed``), never with a password.

        Raises:
            AuthError: wrong old password, locked or disabled account.
            PasswordRejected: the new password breaks the policy (code names the rule).
        """
        from .passwords import hash_password
        from .policy import check_new_password

        user, row = self._check_password(user_id, old_password)
        policy = self.config.policy
        check_new_password(policy, row.id, new_password, self.store.history(row.id, policy.password_history))
        new_hash = hash_password(new_password, iterations=policy.hash_iterations)
        now = float(self._clock.now())

        def tx(con: Any) -> None:
            self.store.set_password(con, row.id, new_hash, now, False)
            self.store.append_audit(con, now, row.id, "user.password_changed", row.id, {}, None)

        self.store.tx(tx)
        self._audit("auth.password_changed", row.id, {}, actor=row.id, role=row.role)
        return user

    def _check_password(self, user_id: str, password: str) -> tuple[User, UserRow]:
        """User id and password (lock-out, disabled); no ageing check."""
        now = float(self._clock.now())
        user_id = user_id if isinstance(user_id, str) else ""
        try:
            attempt = self.guard.begin(user_id, now)  # reserved before the password is checked
        except Locked as exc:
            self._audit("auth.refused_locked", user_id, {"locked_until": iso_utc(exc.until)})
            raise AuthError(self._locked_text(exc.until)) from None
        entry = self.store.user(user_id) if user_id else None
        ok = verify_password(
            password if isinstance(password, str) else "", entry.password_hash if entry else self._dummy_hash
        )
        if not ok or entry is None:
            locked = self.guard.fail(attempt, user_id, now)
            self._audit("auth.failed", user_id, {})
            if locked:
                self._audit("auth.lockout", user_id, {"lockout_s": self.config.policy.lockout_s})
                log.warning("account %r locked after %d failed log-in attempts", user_id,
                            self.config.policy.max_failed_attempts)
            raise AuthError(GENERIC_FAILURE)
        if entry.disabled:
            self.guard.forget(attempt)
            self._audit("auth.refused_disabled", user_id, {})
            raise AuthError(f"account {user_id!r} is disabled")
        try:
            self.guard.succeed(attempt, user_id, now)
        except Locked as exc:  # locked by concurrent failures while this one was checked
            self._audit("auth.refused_locked", user_id, {"locked_until": iso_utc(exc.until)})
            raise AuthError(self._locked_text(exc.until)) from None
        return User(entry.id, entry.full_name, entry.role, entry.disabled), entry

    def _locked_text(self, until: float) -> str:
        return (f"account locked after {self.config.policy.max_failed_attempts} failed "
                f"attempts until {iso_utc(until)}; ask a supervisor or QA to unlock it")

    def is_locked(self, user_id: str) -> bool:
        return self.guard.is_locked(user_id, float(self._clock.now()))

    def unlock(self, user_id: str, by: User) -> None:
        """Lift a lock-out (Part 11 §11.300 loss management); needs ``user.unlock``.

        Raises:
            PermissionDenied: ``by`` may not unlock accounts.
        """
        self.authorize(by, "user.unlock")
        self.guard.unlock(user_id, by.id, float(self._clock.now()))
        self._audit("auth.unlock", user_id, {"by": by.id}, actor=by.id, role=by.role)

    def _audit(
        self, action: str, user_id: str, payload: dict[str, Any], *, actor: str = "system", role: str = ""
    ) -> None:
        if self._record is None:
            return
        try:
            self._record.append(
                "auth",
                batch_id="",
                actor=actor,
                role=role,
                action=action,
                payload={"user_id": user_id, **payload},
            )
        except Exception:  # an audit write failure must not turn into an auth bypass or crash
            log.exception("could not write auth event %s for %r to the batch record", action, user_id)

    # ------------------------------------------------------------------ authorisation
    def authorize(self, user: User | str, action: str) -> ActionRule:
        """Check that ``user``'s role may perform ``action`` (deny by default).

        Returns the rule (``rule.signature`` tells whether an e-signature is also needed).

        Raises:
            PermissionDenied: unknown action, unknown/disabled user, or role not allowed; the
                reason names the role and the action.
        """
        if isinstance(user, str):
            found = self.get(user)
            if found is None:
                raise PermissionDenied(
                    f"unknown user {user!r} may not perform {action!r}", role="", action=action
                )
            user = found
        current = self.store.user(user.id)
        if current is None or current.disabled:
            raise PermissionDenied(
                f"user {user.id!r} is unknown or disabled; {action!r} refused", role=user.role, action=action
            )
        rule = self.rule(action)
        role = current.role  # the directory's role, not a role claimed by the caller's object
        if role not in rule.roles:
            raise PermissionDenied(
                f"role {role!r} may not perform {action!r} (allowed: {', '.join(rule.roles)})",
                role=role,
                action=action,
            )
        if role == ADMIN_ROLE and action not in ADMIN_ACTIONS:  # whatever the file says
            raise PermissionDenied(f"role {ADMIN_ROLE!r} may only administer users, not {action!r}",
                                   role=role, action=action)
        self._check_qualified(current.id, role, action)
        return rule

    def _check_qualified(self, user_id: str, role: str, action: str) -> None:
        """Training status (Part 11 §11.10(i)): a current qualification for the action's class.

        Raises:
            PermissionDenied: code NOT_QUALIFIED or QUALIFICATION_EXPIRED.
        """
        if not self.config.policy.qualification_required or action in QUALIFICATION_EXEMPT:
            return
        cls = action_class(action)
        expires = self.store.qualification(user_id, cls)
        if expires is None:
            raise PermissionDenied(
                f"NOT_QUALIFIED: user {user_id!r} has no qualification for {cls!r} actions; {action!r} refused",
                role=role, action=action, code="NOT_QUALIFIED")
        if float(self._clock.now()) >= expires:
            raise PermissionDenied(
                f"QUALIFICATION_EXPIRED: the qualification of {user_id!r} for {cls!r} actions expired on "
                f"{iso_utc(expires)}; {action!r} refused", role=role, action=action, code="QUALIFICATION_EXPIRED")

    # ------------------------------------------------------------------ e-signatures
    def sign(
        self, user_id: str, password: str, meaning: str, record_hash: str, *, action: str = ""
    ) -> Signature:
        """Execute an e-signature: re-authenticate with both components (§11.200), then return
        a :class:`Signature` carrying printed name, role, time, meaning and the covered hash.

        Args:
            meaning: one of :data:`~aseptic_cell.auth.models.MEANINGS`.
            record_hash: SHA-256 hex of the content being signed (§11.70 linkage).
            action: if given, the signer's role must be allowed to perform it.

        Raises:
            ValueError: meaning not in the pick-list, or ``record_hash`` not a SHA-256 hex digest.
            AuthError: wrong password, locked or disabled account.
            PermissionDenied: the role may not perform ``action``.
        """
        if meaning not in MEANINGS:
            raise ValueError(f"signature meaning {meaning!r} is not one of: {', '.join(MEANINGS)}")
        if not is_sha256_hex(record_hash):
            raise ValueError("record_hash must be the 64-hex-digit SHA-256 of the signed content")
        user = self.authenticate(user_id, password)
        if action:
            self.authorize(user, action)
        now = float(self._clock.now())
        return Signature(user.id, user.full_name, user.role, meaning, record_hash, now, iso_utc(now), action)
