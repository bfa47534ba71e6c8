"""Pydantic model of ``config/users.yaml``: users, password policy and the permission catalogue.

Part 11 §11.10(d)(g) (authority checks), §11.50 (signature meaning), §11.300 (password
controls) [CFR11]; interlock IL-13 (role + e-signature for override, shelve, release, recipe change).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from aseptic_cell.config.base import Identifier, Model, PositiveFinite

from .passwords import MIN_ITERATIONS, parse_hash

Role = Literal["operator", "supervisor", "qa", "engineer"]
ROLES: tuple[str, ...] = get_args(Role)

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


class UserEntry(Model):
    id: Identifier = Field(description="log-in user id, unique, never reused (Part 11 §11.300(a))")
    full_name: str = Field(min_length=1, max_length=128, description="printed name on signatures (§11.50)")
    role: Role
    password_hash: str = Field(description="pbkdf2_sha256$iterations$salt_b64$hash_b64 - never plaintext")
    disabled: bool = False

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
        for action in SIGNED_ACTIONS:
            rule = self.permissions.get(action)
            if rule is None:
                raise ValueError(f"permissions: action {action!r} is missing")
            if not rule.signature:
                raise ValueError(f"permissions: action {action!r} must require an e-signature (IL-13)")
        return self
