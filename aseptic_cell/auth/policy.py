"""Password quality rules of ``users.yaml`` ``policy`` (21 CFR 11.300(a)(b) [CFR11], Annex 11 §12.1).

Every refusal carries a stable code (the CLI and the HMI show it) and a reason that names the
rule, never the password.
"""

from __future__ import annotations

from collections.abc import Iterable

from .models import PasswordPolicy
from .passwords import verify_password


class PasswordRejected(ValueError):
    """A new password breaks the policy; ``code`` is one of the ``PASSWORD_*`` codes below."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = f"{code}: {reason}"


def character_classes(password: str) -> int:
    """How many of lower case, upper case, digit and other characters ``password`` mixes."""
    return sum((
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    ))


def check_new_password(policy: PasswordPolicy, user_id: str, password: str,
                       previous_hashes: Iterable[str] = ()) -> None:
    """Check a new password against the policy and the user's last passwords.

    Args:
        previous_hashes: the user's current and earlier hashes, newest first; the first
            ``policy.password_history`` are compared (each costs one PBKDF2 run).

    Raises:
        PasswordRejected: PASSWORD_TOO_SHORT, PASSWORD_WHITESPACE, PASSWORD_CLASSES,
            PASSWORD_CONTAINS_ID or PASSWORD_REUSED.
    """
    if not isinstance(password, str) or len(password) < policy.min_password_length:
        raise PasswordRejected("PASSWORD_TOO_SHORT",
                               f"a password needs at least {policy.min_password_length} characters")
    if len(password) > 256:
        raise PasswordRejected("PASSWORD_TOO_SHORT", "a password has at most 256 characters")
    if password != password.strip():  # the HMI strips what is typed: such a password could not log in there
        raise PasswordRejected("PASSWORD_WHITESPACE", "a password may not begin or end with white space")
    if character_classes(password) < policy.min_character_classes:
        raise PasswordRejected("PASSWORD_CLASSES",
                               f"a password must mix at least {policy.min_character_classes} of: lower case, "
                               "upper case, digits, other characters")
    if user_id and user_id.casefold() in password.casefold():
        raise PasswordRejected("PASSWORD_CONTAINS_ID", "a password may not contain the user id")
    for n, old in enumerate(previous_hashes):
        if n >= max(policy.password_history, 1):  # the current password is never allowed again
            break
        if verify_password(password, old):
            raise PasswordRejected("PASSWORD_REUSED",
                                   f"a password may not be one of the last {max(policy.password_history, 1)}")
