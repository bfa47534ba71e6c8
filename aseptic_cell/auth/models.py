"""Pydantic model of ``config/users.yaml``: users, password policy and the permission catalogue.

Part 11 §11.10(d)(g) (authority checks), §11.50 (signature meaning), §11.300 (password
controls) [CFR11]; interlock IL-13 (role + e-signature for override, shelve, release, recipe change).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from aseptic_cell.config.base import Identifier, Model, PositiveFinite

from .passwords import MIN_ITERATIONS, parse_hash

Role = Literal["operator", "supervisor", "qa", "engineer", "user_admin"]
ROLES: tuple[str, ...] = get_args(Role)

ADMIN_ROLE = "user_admin"
"""The user-administrator role, kept apart from the production roles (Annex 11 §12.1-12.3,
Part 11 §11.10(g)): it holds only the ``user.*`` administration actions below and no production
action (it cannot start, sign or approve a batch); the production roles hold none of these."""
PRODUCTION_ROLES: tuple[str, ...] = tuple(r for r in ROLES if r != ADMIN_ROLE)

ADMIN_ACTIONS: tuple[str, ...] = (
    "user.add",  # a new named account (ids are never reused, §11.300(a))
    "user.disable",  # an account is never deleted, only disabled
    "user.enable",
    "user.reset_password",  # a reset password must be changed at first use (§11.300(b))
    "user.set_role",
    "user.qualify",  # training / qualification per action class (§11.10(i))
)
"""Actions of the user administrator: signed, held by ``user_admin`` alone (checked below)."""

QUALIFICATION_EXEMPT: tuple[str, ...] = ("batch.hold", "alarm.ack", "record.note", "deviation.raise")
"""Actions nobody is ever refused for lack of training: putting a batch in a safe hold,
acknowledging an alarm, writing a note and raising a deviation must stay open to every
permitted role (refusing them would make the cell less safe, not more controlled)."""

SignatureMeaning = Literal[
    "review",
    "approval",
    "responsibility",
    "authorship",
    "verification",
    "override justification",
]
"""Fixed pick-list of signature meanings (Part 11 §11.50(a)(3))."""
MEANINGS: tuple[str, ...] = get_args(SignatureMeaning)

ActionName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=64)]

SIGNED_ACTIONS: tuple[str, ...] = (
    "batch.abort",  # abort: may leave an unsafe state needing investigation [ISA88]
    "batch.restart",  # releasing a held batch
    "batch.release",  # QA release (IL-13)
    "batch.qa_release",  # QA release (IL-06 wording)
    "override",  # any interlock / intervention override (IL-13; Annex 1 §8.16-8.18 [ANNEX1-2022] [M])
    "alarm.shelve",  # ISA-18.2 [ISA18.2] with the GMP overlay (signed)
    "alarm.out_of_service",  # ISA-18.2 [ISA18.2] with the GMP overlay (signed)
    "recipe.change",  # IL-13
)
"""Actions that must always need an e-signature; the file cannot switch that off."""


class PasswordPolicy(Model):
    max_failed_attempts: int = Field(
        default=5, ge=1, le=20, description="failed log-ins within the window that lock"
    )
    failure_window_s: PositiveFinite = Field(default=900.0, description="window counting failed attempts (s)")
    lockout_s: PositiveFinite = Field(
        default=1800.0, description="how long a locked account stays locked (s)"
    )
    min_password_length: int = Field(
        default=10, ge=8, le=128, description="for `python -m aseptic_cell.auth hash`"
    )
    min_iterations: int = Field(
        default=MIN_ITERATIONS, ge=MIN_ITERATIONS, description="PBKDF2 iteration floor"
    )
    # --- password quality, history and ageing (Part 11 §11.300(a)(b) [CFR11], Annex 11 §12.1) ---
    min_character_classes: int = Field(
        default=3, ge=1, le=4,
        description="classes (lower, upper, digit, other) a new password must mix [M] (site policy; "
                    "NIST SP 800-63B §5.1.1.2 prefers length to composition)")
    password_history: int = Field(
        default=5, ge=0, le=50, description="a new password may not be any of the last N [M]")
    max_password_age_days: float = Field(
        default=90.0, ge=0.0, le=3650.0,
        description="after this a password has expired: log-in only to change it; 0 = no ageing [M] "
                    "(§11.300(b) 'periodically checked, recalled, or revised')")
    hash_iterations: int = Field(
        default=600_000, ge=MIN_ITERATIONS,
        description="PBKDF2 iterations of passwords set in the cell (OWASP Password Storage Cheat Sheet 2023)")
    # --- training / qualification per action class (Part 11 §11.10(i) [CFR11], Annex 11 §2) ---
    qualification_required: bool = Field(
        default=True, description="an action needs a current qualification for its class [M]")
    initial_qualification_days: float = Field(
        default=365.0, gt=0.0, le=3650.0,
        description="users seeded from this file are qualified for their role's classes this long [M]")
    import_new_config_users: bool = Field(
        default=True,
        description="a user listed here but absent from the live store is imported (audited as "
                    "user.seed, actor 'config'); false on a site where only the administrator adds users")


class UserEntry(Model):
    id: Identifier = Field(description="log-in user id, unique, never reused (Part 11 §11.300(a))")
    full_name: str = Field(min_length=1, max_length=128, description="printed name on signatures (§11.50)")
    role: Role
    password_hash: str = Field(description="pbkdf2_sha256$iterations$salt_b64$hash_b64 - never plaintext")
    disabled: bool = False
    must_change_password: bool = Field(
        default=False, description="the seeded password is an initial one: changed at first use")

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        parse_hash(value)
        return value


class ActionRule(Model):
    roles: list[Role] = Field(min_length=1, description="roles allowed to perform the action")
    signature: bool = Field(
        default=False, description="an e-signature (re-entered password + meaning) is required"
    )
    meaning: SignatureMeaning | None = Field(
        default=None, description="meaning pre-selected in the sign dialog"
    )
    description: str = ""

    @model_validator(mode="after")
    def _meaning(self) -> ActionRule:
        if self.signature and self.meaning is None:
            raise ValueError("an action that needs a signature must name its meaning")
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("roles listed twice")
        return self


class UsersFile(Model):
    """``config/users.yaml``."""

    policy: PasswordPolicy = Field(default_factory=lambda: PasswordPolicy())
    users: list[UserEntry] = Field(default_factory=list)
    permissions: dict[ActionName, ActionRule]

    @model_validator(mode="after")
    def _checks(self) -> UsersFile:
        seen: set[str] = set()
        for u in self.users:
            key = u.id.casefold()
            if key in seen:
                raise ValueError(f"user id {u.id!r} is listed twice (ids are unique, case-insensitively)")
            seen.add(key)
            iterations = parse_hash(u.password_hash)[0]
            if iterations < self.policy.min_iterations:
                raise ValueError(
                    f"user {u.id!r}: password hash uses {iterations} iterations, "
                    f"policy needs >= {self.policy.min_iterations}"
                )
        for action, arule in self.permissions.items():  # the administrator is kept apart
            if action in ADMIN_ACTIONS:
                if arule.roles != [ADMIN_ROLE] or not arule.signature:
                    raise ValueError(f"permissions: {action!r} must be held by role {ADMIN_ROLE!r} alone "
                                     "and e-signed (user administration is kept apart from production)")
            elif ADMIN_ROLE in arule.roles:
                raise ValueError(f"permissions: role {ADMIN_ROLE!r} may hold only the user administration "
                                 f"actions, not {action!r} (no production role, no batch approval)")
        for action in SIGNED_ACTIONS:
            rule = self.permissions.get(action)
            if rule is None:
                raise ValueError(f"permissions: action {action!r} is missing")
            if not rule.signature:
                raise ValueError(f"permissions: action {action!r} must require an e-signature (IL-13)")
        return self
