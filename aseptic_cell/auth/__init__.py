"""Users, roles, permissions and electronic signatures (21 CFR Part 11, EU GMP Annex 11 §12, §14).

The live user state (accounts, password history and ageing, qualifications, the signed
administration audit) is in :mod:`.store`; the password rules in :mod:`.policy`; the user
administrator's operations in :mod:`.admin`; ``cellctl users`` in :mod:`.cli`.
"""

from .directory import (
    GENERIC_FAILURE,
    AuthError,
    PasswordChangeRequired,
    PermissionDenied,
    Signature,
    User,
    UserDirectory,
    UsersFileError,
    record_signature,
)
from .models import MEANINGS, ROLES, SIGNED_ACTIONS, ActionRule, PasswordPolicy, UserEntry, UsersFile
from .passwords import hash_password, verify_password

__all__ = [
    "GENERIC_FAILURE",
    "MEANINGS",
    "ROLES",
    "SIGNED_ACTIONS",
    "ActionRule",
    "AuthError",
    "PasswordChangeRequired",
    "PasswordPolicy",
    "PermissionDenied",
    "Signature",
    "User",
    "UserDirectory",
    "UserEntry",
    "UsersFile",
    "UsersFileError",
    "hash_password",
    "record_signature",
    "verify_password",
]
