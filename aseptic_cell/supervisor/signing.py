"""Electronic signatures of the supervisor's critical actions: one helper for "authorise,
re-authenticate, sign, record" used by every signed action (batch commands, operator device
commands, device recovery, alarm shelving).

21 CFR 11.50 (the signature shows the printed name, the time and the meaning), 11.70 (bound
to its record: the signed subject is the SHA-256 of the action's content), 11.200(a) (each
signing re-authenticates with the password) [CFR11].
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ..auth import AuthError, PermissionDenied, record_signature
from ..results import CommandResult

log = logging.getLogger(__name__)


class Subject(str):
    """A signed subject: the SHA-256 hex digest (the ``str`` value, what the signature covers)
    that also carries ``content``, the exact JSON text hashed. The text is stored with the
    signature in the record (payload ``signed_content``) so the hash can be re-verified later
    (21 CFR 11.70 [CFR11]; ``cellctl record verify`` does)."""

    content: str

    def __new__(cls, content: str) -> Subject:
        obj = super().__new__(cls, hashlib.sha256(content.encode("utf-8")).hexdigest())
        obj.content = content
        return obj


def subject_hash(content: Any) -> Subject:
    """SHA-256 (hex) of the JSON of what is signed (sorted keys, compact; a
    :class:`Subject` that keeps the JSON text for the record)."""
    return Subject(json.dumps(content, default=str, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


class Signing:
    """Authorisation and e-signatures over a user directory, recorded in the batch record.

    Args:
        users: the :class:`~aseptic_cell.auth.UserDirectory`.
        record: the batch record (None: signatures are not recorded).
    """

    def __init__(self, users: Any, record: Any) -> None:
        self.users = users
        self.record = record

    def authorize(self, user: str, permission: str) -> tuple[Any, CommandResult | None]:
        """(the action's rule, None) or (None, a PERMISSION refusal)."""
        if not isinstance(user, str):
            return None, CommandResult.refuse("PERMISSION", f"user id must be a string, got {user!r}")
        try:
            return self.users.authorize(user, permission), None
        except PermissionDenied as exc:
            return None, CommandResult.refuse("PERMISSION", exc.reason)

    def sign_if_required(self, user: str, rule: Any, *, password: str, meaning: str, action: str,
                         subject: str, batch_id: str, reason: str, missing: str = "",
                         record: bool = True) -> tuple[Any, CommandResult | None]:
        """Sign ``subject`` when ``rule`` requires a signature, and record the signature.

        Returns (signature or None, None), or (None, a SIGNATURE refusal): no password given
        (``missing`` says what to do), a wrong password, a disabled account or an unknown meaning.
        With ``record=False`` the caller records the signature once its action has been accepted.
        """
        if not rule.signature:
            return None, None
        if not password:
            return None, CommandResult.refuse(
                "SIGNATURE", missing or f"{action} needs an e-signature (password and meaning)")
        try:
            sig = self.users.sign(user, password, meaning or rule.meaning or "responsibility", subject,
                                  action=action)
        except (AuthError, ValueError) as exc:
            return None, CommandResult.refuse("SIGNATURE", exc.reason if isinstance(exc, AuthError) else str(exc))
        if record:
            self.record_signature(sig, batch_id=batch_id, reason=reason)
        return sig, None

    def record_signature(self, sig: Any, *, batch_id: str, reason: str) -> None:
        if self.record is None:
            return
        content = getattr(sig.record_hash, "content", None)
        try:
            if isinstance(content, str):  # store what was signed next to its hash (§11.70)
                self.record.append("signature", batch_id=batch_id, actor=sig.user_id, role=sig.role,
                                   action=sig.action or f"sign.{sig.meaning.replace(' ', '_')}", reason=reason,
                                   payload={**sig.to_payload(), "signed_content": content})
                return
            record_signature(self.record, sig, batch_id=batch_id, reason=reason)
        except Exception as exc:  # noqa: BLE001 - the record store reports its own failure
            log.error("signature not recorded: %r", exc)
