"""QA's actions on a batch record: the deviation lifecycle and the disposition (issue 15 items 1, 4).

Everything here works on a record store (:class:`~aseptic_cell.records.BatchRecord` or
:class:`~aseptic_cell.records.pg.PgBatchRecord`) and a :class:`~aseptic_cell.auth.UserDirectory`,
per batch, also long after the batch ended and the supervisor that ran it is gone (the CLI, the
HMI and the tests call the same functions). Each action is authorised by users.yaml (deny by
default), signed where users.yaml says so (re-authenticated, 21 CFR 11.200 [CFR11]), written as
append-only entries, and a refused action raises :class:`DeviationError` with a precise code (the
refusal is recorded too while the batch's record is open).

Disposition (:func:`dispose`): release or reject, an e-signature with the meaning users.yaml gives
``record.disposition`` (``approval``) over the record's head (seq, hash) — refused

* ``PERMISSION`` the user's role may not disposition (QA only);
* ``BATCH_NOT_ENDED`` the batch has not reached Complete, Stopped or Aborted;
* ``CHAIN_INVALID`` the record does not verify (the walk of ``cellctl record verify``);
* ``DEVIATION_OPEN`` a deviation of the batch is not closed;
* ``JUSTIFICATION_REQUIRED`` a release of a batch that was aborted/stopped or whose end-of-batch
  glove test is missing (IL-06) without a written justification;
* ``DISPOSITIONED`` the batch is already released or rejected (a signed post-release correction,
  :func:`correct_after_release`, reopens it: it must then be dispositioned again);
* ``SIGNATURE`` wrong password, locked or disabled account, or no password;
* ``CONCURRENT_CHANGE`` an entry of the batch was written between the signed head and the
  signature (the record is shared with other writers): nothing is dispositioned, sign again.

A released or rejected batch is closed by the store itself (SQLite and PostgreSQL triggers and
the append check, :class:`~aseptic_cell.records.RecordClosedError`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..records.canonical import canonical_json
from ..records.store import CLOSING_ACTIONS, POST_RELEASE_CORRECTION, Entry, RecordClosedError, VerifyReport
from .deviations import CLASSES, Deviation, DeviationError, DeviationPolicy, fold, link

FINAL_STATES = ("Complete", "Stopped", "Aborted")
MIN_TEXT = 10
"""Shortest description, root cause or justification accepted (characters)."""


# ---------------------------------------------------------------------------- helpers
def batch_entries(record: Any, batch_id: str) -> list[Entry]:
    entries: list[Entry] = record.entries(batch_id=batch_id)
    return entries


def deviations(record: Any, batch_id: str | None = None, policy: DeviationPolicy | None = None) -> list[Deviation]:
    """The deviations of ``batch_id`` (every batch when None) in the order they were raised."""
    return list(fold(record.entries(batch_id=batch_id, kinds=["deviation"]), policy).values())


def last_batch(record: Any) -> str:
    """The batch id of the record's last entry that names one ("" for none)."""
    for e in reversed(record.entries(kinds=["phase_transition", "command", "deviation", "disposition"])):
        if e.batch_id:
            return str(e.batch_id)
    return ""


def batch_end_state(entries: Sequence[Entry]) -> str:
    """The final state the batch reached (Complete / Stopped / Aborted), or "" while it has not."""
    final = ""
    for e in entries:
        if e.kind == "phase_transition" and e.payload.get("level") == "batch":
            to = str(e.payload.get("to"))
            if to in FINAL_STATES:
                final = to
            elif to != "Idle":
                final = ""
    return final


def disposition_status(record: Any, batch_id: str) -> dict[str, Any]:
    """``state``: OPEN (never dispositioned), RELEASED, REJECTED or REOPENED (a post-release
    correction since), with the deciding entry's seq, actor and time."""
    return status_of(record.entries(batch_id=batch_id, kinds=["disposition", "correction"]), batch_id)


def status_of(entries: Iterable[Entry], batch_id: str) -> dict[str, Any]:
    """:func:`disposition_status` from a batch's entries (the batch report uses it)."""
    last = None
    for e in entries:
        if e.kind == "disposition" or (e.kind == "correction" and e.action == POST_RELEASE_CORRECTION):
            last = e
    if last is None:
        return {"batch_id": batch_id, "state": "OPEN", "seq": 0}
    if last.kind == "correction":
        return {"batch_id": batch_id, "state": "REOPENED", "seq": last.seq, "by": last.actor, "at": last.ts_iso,
                "reason": last.reason}
    state = "RELEASED" if last.action == "disposition.release" else "REJECTED"
    return {"batch_id": batch_id, "state": state, "seq": last.seq, "by": last.actor, "at": last.ts_iso,
            "head_seq": last.payload.get("head_seq"), "head_hash": last.payload.get("head_hash"),
            "justification": last.payload.get("justification", ""), "signature_seq": last.payload.get("signature_seq")}


def _refuse(record: Any, user: str, batch_id: str, action: str, code: str, why: str) -> DeviationError:
    """Record the refusal (against the batch while its record is open, else cell-level)."""
    payload = {"source": "qa", "command": action, "code": code, "batch": batch_id}
    actor = user if isinstance(user, str) and user.strip() else "unknown"
    for bid in (batch_id, ""):
        try:
            record.append("refusal", batch_id=bid, actor=actor, action=action, reason=why[:2000], payload=payload)
            break
        except RecordClosedError:
            continue
        except Exception:  # noqa: BLE001 - the store tells its own failure listeners; the refusal stands
            break
    return DeviationError(code, why)


def _authorize(record: Any, users: Any, user: str, permission: str, batch_id: str) -> Any:
    from ..auth import PermissionDenied

    try:
        return users.authorize(user, permission)
    except PermissionDenied as exc:
        raise _refuse(record, user, batch_id, permission, "PERMISSION", exc.reason) from exc


def _sign(record: Any, users: Any, user: str, password: str, rule: Any, permission: str, batch_id: str,
          subject: Mapping[str, Any], reason: str, *, append: bool = True) -> tuple[dict[str, Any], Entry | None]:
    """Re-authenticate and sign ``subject`` (canonical JSON stored with its hash, §11.70); append
    the ``signature`` entry unless ``append`` is False. Returns (signature payload, entry)."""
    from ..auth import AuthError, PermissionDenied

    if not password:
        raise _refuse(record, user, batch_id, permission, "SIGNATURE",
                      f"{permission} needs an e-signature: the password is re-entered for every signature")
    content = canonical_json(dict(subject))
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    meaning = str(getattr(rule, "meaning", "") or "approval")
    try:
        sig = users.sign(user, password, meaning, digest, action=permission)
    except (AuthError, PermissionDenied) as exc:
        raise _refuse(record, user, batch_id, permission, "SIGNATURE", exc.reason) from exc
    except ValueError as exc:
        raise _refuse(record, user, batch_id, permission, "SIGNATURE", str(exc)) from exc
    payload = {**sig.to_payload(), "signed_content": content}
    entry = None
    if append:
        entry = record.append("signature", batch_id=batch_id, actor=sig.user_id, role=sig.role, action=permission,
                              reason=reason[:2000], payload=payload)
    return payload, entry


def _text(record: Any, user: str, batch_id: str, action: str, text: Any, what: str) -> str:
    if not isinstance(text, str) or len(text.strip()) < MIN_TEXT:
        raise _refuse(record, user, batch_id, action, "INVALID", f"{what} (at least {MIN_TEXT} characters)")
    return text.strip()


def _open_for(record: Any, user: str, batch_id: str, action: str) -> None:
    closing = record.closing(batch_id)
    if closing is not None and closing[1] in CLOSING_ACTIONS:
        raise _refuse(record, user, "", action, "DISPOSITIONED",
                      f"batch {batch_id} was {closing[1].split('.', 1)[1]}d at seq {closing[0]}: its record is "
                      "closed (a signed post-release correction reopens it)")


def _role(users: Any, user: str) -> str:
    u = users.get(user) if hasattr(users, "get") else None
    return str(getattr(u, "role", "") or "")


# ---------------------------------------------------------------------------- deviations
def raise_deviation(record: Any, users: Any, user: str, batch_id: str, description: str, *, cls: str = "",
                    links: Sequence[int] = (), rule: str = "", policy: DeviationPolicy | None = None) -> Deviation:
    """Raise a deviation by hand against ``batch_id`` (``deviation.raise``), linked to the entries
    at ``links`` (their seq; each must be an entry of this batch)."""
    action = "deviation.raise"
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise _refuse(record, user, "", action, "INVALID", "a deviation is raised against a batch (batch id)")
    _authorize(record, users, user, action, batch_id)
    _open_for(record, user, batch_id, action)
    description = _text(record, user, batch_id, action, description,
                        "a deviation needs a description of what happened")
    policy = policy or DeviationPolicy()
    cls = cls or policy.class_of("manual")
    if cls not in CLASSES:
        raise _refuse(record, user, batch_id, action, "INVALID", f"class must be one of {', '.join(CLASSES)}, "
                      f"got {cls!r}")
    linked = []
    for seq in links:
        e = record.get(int(seq))
        if e is None or e.batch_id != batch_id:
            raise _refuse(record, user, batch_id, action, "INVALID", f"seq {seq} is not an entry of batch {batch_id}")
        linked.append(link(e))
    n = sum(1 for d in deviations(record, batch_id, policy) if d.source == "manual") + 1
    did = f"DEV-{batch_id}-M{n:03d}"
    e = record.append("deviation", batch_id=batch_id, actor=user, role=_role(users, user), action=action,
                      reason=description[:2000],
                      payload={"deviation": did, "class": cls, "source": "manual", "rule": rule,
                               "description": description, "batch": batch_id, "links": linked})
    return fold([e], policy)[did]


def _get(record: Any, user: str, dev_id: str, action: str, policy: DeviationPolicy | None) -> Deviation:
    for d in deviations(record, None, policy):
        if d.id == dev_id:
            return d
    raise _refuse(record, user, "", action, "INVALID", f"unknown deviation {dev_id!r}")


def classify(record: Any, users: Any, user: str, dev_id: str, cls: str, reason: str,
             policy: DeviationPolicy | None = None) -> Deviation:
    """Set the class of an open deviation (``deviation.classify``)."""
    action = "deviation.classify"
    dev = _get(record, user, dev_id, action, policy)
    _authorize(record, users, user, action, dev.batch_id)
    _open_for(record, user, dev.batch_id, action)
    if not dev.open:
        raise _refuse(record, user, dev.batch_id, action, "STATE", f"deviation {dev_id} is closed")
    if cls not in CLASSES:
        raise _refuse(record, user, dev.batch_id, action, "INVALID", f"class must be one of {', '.join(CLASSES)}")
    reason = _text(record, user, dev.batch_id, action, reason, "a classification needs its reason")
    record.append("deviation", batch_id=dev.batch_id, actor=user, role=_role(users, user), action=action,
                  reason=reason, payload={"deviation": dev.id, "class": cls, "previous": dev.cls})
    return _get(record, user, dev_id, action, policy)


def investigate(record: Any, users: Any, user: str, dev_id: str, findings: str,
                policy: DeviationPolicy | None = None) -> Deviation:
    """Record an investigation's findings (``deviation.investigate``)."""
    action = "deviation.investigate"
    dev = _get(record, user, dev_id, action, policy)
    _authorize(record, users, user, action, dev.batch_id)
    _open_for(record, user, dev.batch_id, action)
    if not dev.open:
        raise _refuse(record, user, dev.batch_id, action, "STATE", f"deviation {dev_id} is closed")
    findings = _text(record, user, dev.batch_id, action, findings, "an investigation needs its findings")
    record.append("deviation", batch_id=dev.batch_id, actor=user, role=_role(users, user), action=action,
                  reason=findings[:2000], payload={"deviation": dev.id, "findings": findings})
    return _get(record, user, dev_id, action, policy)


def close_deviation(record: Any, users: Any, user: str, password: str, dev_id: str, root_cause: str,
                    policy: DeviationPolicy | None = None) -> Deviation:
    """QA closes a deviation with its root cause and an e-signature (``deviation.close``; the
    meaning from users.yaml); never the person who raised it. Possible after the batch ended, until
    it is dispositioned."""
    action = "deviation.close"
    dev = _get(record, user, dev_id, action, policy)
    rule = _authorize(record, users, user, action, dev.batch_id)
    _open_for(record, user, dev.batch_id, action)
    if not dev.open:
        raise _refuse(record, user, dev.batch_id, action, "STATE", f"deviation {dev_id} is already closed")
    if user == dev.raised_by:
        raise _refuse(record, user, dev.batch_id, action, "PERMISSION",
                      f"{user} raised {dev_id}: a second person closes it")
    root_cause = _text(record, user, dev.batch_id, action, root_cause, "closing a deviation needs its root cause")
    subject = {"deviation": dev.id, "batch": dev.batch_id, "class": dev.cls, "raised_seq": dev.raised_seq,
               "raised_hash": dev.raised_hash, "links": dev.links, "root_cause": root_cause, "action": action}
    sig, entry = _sign(record, users, user, password, rule, action, dev.batch_id, subject, root_cause)
    assert entry is not None
    record.append("deviation", batch_id=dev.batch_id, actor=user, role=str(sig.get("role", "")), action=action,
                  reason=root_cause[:2000],
                  payload={"deviation": dev.id, "state": "CLOSED", "class": dev.cls, "root_cause": root_cause,
                           "meaning": sig.get("meaning"), "signature_seq": entry.seq, "signature_hash": entry.hash})
    return _get(record, user, dev_id, action, policy)


# ---------------------------------------------------------------------------- disposition
def _dead_end(entries: Sequence[Entry], devs: Sequence[Deviation], end: str) -> str:
    """Why a release of this batch needs a written justification (IL-06's dead end), or ""."""
    if end in ("Aborted", "Stopped"):
        return f"the batch was {end.lower()}"
    if any(d.rule == "IL-06" or d.source == "end_glove_test_missing" for d in devs):
        return "its end-of-batch glove test failed or never ran (IL-06)"
    return ""


def check_disposition(record: Any, batch_id: str, *, verify: Callable[[], VerifyReport] | None = None,
                      policy: DeviationPolicy | None = None) -> list[tuple[str, str]]:
    """What stands in the way of a disposition of ``batch_id`` now: (code, reason) pairs, [] when
    none (the release justification is checked by :func:`dispose`)."""
    out: list[tuple[str, str]] = []
    closing = record.closing(batch_id)
    if closing is not None and closing[1] in CLOSING_ACTIONS:
        out.append(("DISPOSITIONED", f"batch {batch_id} was {closing[1].split('.', 1)[1]}d at seq {closing[0]} (a "
                                     "signed post-release correction reopens it)"))
    entries = batch_entries(record, batch_id)
    if not entries:
        out.append(("INVALID", f"no entries of batch {batch_id!r} in this record"))
        return out
    if not batch_end_state(entries):
        out.append(("BATCH_NOT_ENDED", f"batch {batch_id} has not ended (Complete, Stopped or Aborted): a batch "
                                       "in progress is not dispositioned"))
    report = verify() if verify is not None else record.verify()
    if not report.ok:
        out.append(("CHAIN_INVALID", f"the record does not verify: {report.problem}"))
    open_devs = [d for d in fold((e for e in entries if e.kind == "deviation"), policy).values() if d.open]
    if open_devs:
        out.append(("DEVIATION_OPEN", f"{len(open_devs)} deviation(s) open: "
                                      + ", ".join(f"{d.id} ({d.cls}, {d.state})" for d in open_devs[:10])))
    return out


def dispose(record: Any, users: Any, user: str, password: str, batch_id: str, decision: str, *,
            justification: str = "", verify: Callable[[], VerifyReport] | None = None,
            policy: DeviationPolicy | None = None) -> Entry:
    """Release or reject ``batch_id`` (see the module for the refusals). Returns the
    ``disposition`` entry (the batch's record is closed from then on)."""
    action = "record.disposition"
    if decision not in ("release", "reject"):
        raise _refuse(record, user, batch_id, action, "INVALID", f"decision must be release or reject, got "
                      f"{decision!r}")
    rule = _authorize(record, users, user, action, batch_id)
    blocking = check_disposition(record, batch_id, verify=verify, policy=policy)
    if blocking:
        code, why = blocking[0]
        raise _refuse(record, user, batch_id if code != "DISPOSITIONED" else "", action, code,
                      "; ".join(w for _c, w in blocking))
    entries = batch_entries(record, batch_id)
    devs = list(fold((e for e in entries if e.kind == "deviation"), policy).values())
    dead_end = _dead_end(entries, devs, batch_end_state(entries))
    justification = justification.strip() if isinstance(justification, str) else ""
    if decision == "release" and dead_end and len(justification) < MIN_TEXT:
        raise _refuse(record, user, batch_id, action, "JUSTIFICATION_REQUIRED",
                      f"a release of batch {batch_id} needs a written justification: {dead_end}")
    head_seq, head_hash = record.head()
    subject = {"batch": batch_id, "decision": decision, "head_seq": head_seq, "head_hash": head_hash,
               "deviations": [d.id for d in devs], "justification": justification, "action": action}
    reason = justification or f"{decision} of batch {batch_id}"
    sig, entry = _sign(record, users, user, password, rule, action, batch_id, subject, reason)
    assert entry is not None
    # other writers share the record (the supervisor, other batches): an entry of THIS batch that
    # landed between the signed head and the signature would not be covered by it
    # (alarm events the alarm manager still files under the ended batch are the cell's: not counted)
    late = [e.seq for e in record.entries(batch_id=batch_id) if head_seq < e.seq < entry.seq and e.kind != "alarm"]
    if late:
        raise _refuse(record, user, batch_id, action, "CONCURRENT_CHANGE",
                      f"entries {late[:10]} of batch {batch_id} were written while signing: sign again")
    done: Entry = record.append(
        "disposition", batch_id=batch_id, actor=user, role=str(sig.get("role", "")),
        action=f"disposition.{decision}", reason=reason[:2000],
        payload={"decision": decision, "head_seq": head_seq, "head_hash": head_hash, "deviations": [d.id for d in devs],
                 "justification": justification, "meaning": sig.get("meaning"), "signature_seq": entry.seq,
                 "signature_hash": entry.hash, "dead_end": dead_end})
    return done


def correct_after_release(record: Any, users: Any, user: str, password: str, batch_id: str, original_seq: int,
                          reason: str, changes: Mapping[str, tuple[Any, Any]]) -> Entry:
    """A signed post-release correction of entry ``original_seq`` of a released/rejected batch
    (``record.post_release_correction``): the only append the closed record takes; it reopens the
    disposition (the batch must be dispositioned again)."""
    action = POST_RELEASE_CORRECTION
    rule = _authorize(record, users, user, action, batch_id)
    closing = record.closing(batch_id)
    if closing is None or closing[1] not in CLOSING_ACTIONS:
        raise _refuse(record, user, batch_id, action, "STATE", f"batch {batch_id} is not released or rejected: "
                      "correct it with an ordinary correction (record.correct)")
    reason = _text(record, user, "", action, reason, "a post-release correction needs its reason")
    original = record.get(int(original_seq))
    if original is None or original.batch_id != batch_id or not changes:
        raise _refuse(record, user, "", action, "INVALID", f"seq {original_seq} is not an entry of batch {batch_id}, "
                      "or no changes given")
    body = {"corrects_seq": original.seq, "corrects_hash": original.hash,
            "changes": {k: {"old": v[0], "new": v[1]} for k, v in changes.items()},
            "reopens_disposition_seq": closing[0]}
    sig, _none = _sign(record, users, user, password, rule, action, batch_id,
                       {**body, "batch": batch_id, "reason": reason, "action": action}, reason, append=False)
    entry: Entry = record.append("correction", batch_id=batch_id, actor=user, role=str(sig.get("role", "")),
                                 action=action, reason=reason[:2000], payload={**body, "signature": sig})
    # reopened now: the signature also as its own entry (printed with every other signature, §11.50)
    record.append("signature", batch_id=batch_id, actor=user, role=str(sig.get("role", "")), action=action,
                  reason=reason[:2000], payload=sig)
    return entry
