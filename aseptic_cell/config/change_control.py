"""Change control of the master data (issue 15 item 7; 21 CFR 11.10(k) [CFR11], Annex 11 §10
[ANNEX11-2011]): recipes, VHP cycles, autoclave programs, process definitions and motion paths
carry a version, a status (draft / approved / obsolete) and a QA approval signature over their
content hash; a GMP batch starts only with approved, unchanged items, and the hash of the whole
configuration is recorded at batch start.

Items (kind, file, how one is identified):

* ``recipe``            ``recipes/*.yaml``                    the file (``id``)
* ``process``           ``processes/*.yaml``                  the file (``id``)
* ``vhp_cycle``         ``vhp_cycles.yaml`` ``cycles[]``      ``id``
* ``autoclave_program`` ``autoclave_programs.yaml`` ``programs[]``  ``id``
* ``motion_path``       ``motion_library.yaml`` ``paths[]``   ``name`` (the motion library's own
  hash and inline approval, :mod:`aseptic_cell.motion.library`; no version field: each re-plan
  is a new content hash, its status is derived from its approval)

Content hash: SHA-256 of the canonical JSON (sorted keys, no spaces) of the item as written in
its YAML (comments and layout do not count), without its ``status``: approving or retiring an
item does not change what was approved. Any other edit (a parameter, the version) changes it.

Approval: the e-signature of :meth:`aseptic_cell.auth.UserDirectory.sign` (both components
re-entered, role ``qa``, meaning ``approval``), the same payload the motion library stores
inline (``user_id, full_name, role, meaning, record_hash, signed_at, signed_at_iso, action``;
``record_hash`` = the item's content hash). For the YAML items it is kept in the approvals
store ``<config>/approvals.yaml`` (append-only history; the last entry of an item counts), so
the commented YAML files are not rewritten: approving only sets their ``status:`` line.

Effective state of an item (:func:`item_state`), worst first: ``OBSOLETE``, ``DRAFT``,
``NOT_APPROVED`` (status says approved but no QA signature), ``BAD_SIGNATURE`` (not a QA
approval), ``CHANGED`` (content hash differs from the signed one), ``APPROVED``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..records.canonical import is_sha256_hex

KINDS = ("recipe", "process", "vhp_cycle", "autoclave_program", "motion_path")
STATUSES = ("draft", "approved", "obsolete")
APPROVALS_FILE = "approvals.yaml"
APPROVALS_FORMAT = 1
#: Permission checked when signing: ``config.approve`` if the site's catalogue defines it, else
#: ``recipe.approve`` (QA, meaning approval), as the motion library does.
APPROVE_ACTIONS = ("config.approve", "recipe.approve")
APPROVER_ROLE = "qa"
APPROVAL_MEANING = "approval"
#: Files whose items are under change control (other files count in the configuration hash only).
_LIST_FILES = {"vhp_cycle": ("vhp_cycles.yaml", "cycles"), "autoclave_program": ("autoclave_programs.yaml", "programs")}
_DIR_KINDS = {"recipe": "recipes", "process": "processes"}
MOTION_FILE = "motion_library.yaml"

try:  # the C loader when PyYAML was built with libyaml (the motion library is large)
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


class ChangeControlError(ValueError):
    """A change-control operation is not possible (unknown item, malformed file, wrong signer)."""


# ----------------------------------------------------------------------------- hashing
def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=str)


def content_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 hex of an item's canonical JSON without its ``status``."""
    body = {k: v for k, v in content.items() if k != "status"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Item:
    """One item under change control, as found in a configuration directory."""

    kind: str
    id: str
    file: str
    """Path relative to the configuration directory."""
    version: int | None
    status: str
    content_hash: str
    content: Mapping[str, Any] = field(repr=False, compare=False)
    approval: Mapping[str, Any] | None = None
    """The signature payload that approves it (approvals store, or the motion library inline)."""

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.id


@dataclass(frozen=True)
class ItemState:
    item: Item
    code: str
    reason: str

    @property
    def usable(self) -> bool:
        return self.code == "APPROVED"

    def to_dict(self) -> dict[str, Any]:
        a = self.item.approval or {}
        return {"kind": self.item.kind, "id": self.item.id, "file": self.item.file, "version": self.item.version,
                "status": self.item.status, "state": self.code, "content_hash": self.item.content_hash,
                "approved_by": a.get("user_id", ""), "approved_at": a.get("signed_at_iso", ""),
                "reason": self.reason}


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise ChangeControlError(f"{path}: cannot read: {exc}") from None


def _version(d: Mapping[str, Any]) -> int | None:
    v = d.get("version")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _status(d: Mapping[str, Any]) -> str:
    return str(d.get("status", "draft"))


def load_approvals(root: str | Path) -> list[dict[str, Any]]:
    """The approvals store's history (oldest first); empty when the file is absent."""
    p = Path(root) / APPROVALS_FILE
    if not p.is_file():
        return []
    doc = _read_yaml(p) or {}
    if not isinstance(doc, dict) or doc.get("version") != APPROVALS_FORMAT or not isinstance(
            doc.get("approvals") or [], list):
        raise ChangeControlError(f"{p}: expected a mapping with version: {APPROVALS_FORMAT} and a list 'approvals'")
    out = []
    for i, a in enumerate(doc.get("approvals") or []):
        if not isinstance(a, dict) or not {"kind", "id", "content_hash", "approval"} <= set(a) or not isinstance(
                a["approval"], dict):
            raise ChangeControlError(f"{p}: approvals[{i}]: needs kind, id, content_hash and approval")
        out.append(a)
    return out


def load_items(root: str | Path) -> dict[tuple[str, str], Item]:
    """Every item under change control in the configuration directory ``root`` (raw YAML, not the
    pydantic models: works on any revision). Raises :class:`ChangeControlError` on a malformed file."""
    root = Path(root)
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for a in load_approvals(root):
        current[(str(a["kind"]), str(a["id"]))] = a
    items: dict[tuple[str, str], Item] = {}

    def add(kind: str, d: Any, rel: str, ident_key: str = "id") -> None:
        if not isinstance(d, dict) or not isinstance(d.get(ident_key), str):
            raise ChangeControlError(f"{rel}: a {kind} without a string '{ident_key}'")
        key = (kind, d[ident_key])
        if key in items:
            raise ChangeControlError(f"{rel}: {kind} {d[ident_key]!r} is also defined in {items[key].file}")
        a = current.get(key)
        items[key] = Item(kind, d[ident_key], rel, _version(d), _status(d), content_hash(d), d,
                          dict(a["approval"]) if a else None)

    for kind, sub in _DIR_KINDS.items():
        for f in sorted((root / sub).glob("*.yaml")):
            add(kind, _read_yaml(f), f"{sub}/{f.name}")
    for kind, (name, list_key) in _LIST_FILES.items():
        p = root / name
        if p.is_file():
            doc = _read_yaml(p) or {}
            for d in (doc.get(list_key) or []) if isinstance(doc, dict) else []:
                add(kind, d, name)
    if (root / MOTION_FILE).is_file():
        from ..motion.library import FORMAT_VERSION, LibraryError, LibraryPath

        # the library's own path model and hash; read with the C YAML loader (the file is large)
        doc = _read_yaml(root / MOTION_FILE) or {}
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ChangeControlError(f"{MOTION_FILE}: expected a mapping with version: {FORMAT_VERSION}")
        for d in doc.get("paths") or []:
            try:
                lp = LibraryPath.from_dict(d)
            except LibraryError as exc:
                raise ChangeControlError(f"{MOTION_FILE}: {exc}") from None
            if ("motion_path", lp.name) in items:
                raise ChangeControlError(f"{MOTION_FILE}: path name {lp.name!r} repeated")
            items[("motion_path", lp.name)] = Item(
                "motion_path", lp.name, MOTION_FILE, None, "approved" if lp.approval else "draft",
                lp.computed_hash(), lp.to_dict(), lp.approval)
    return items


def item_state(item: Item) -> ItemState:
    """The effective change-control state of one item (see the module doc)."""
    name = f"{item.kind} {item.id!r}" + (f" v{item.version}" if item.version is not None else "")
    if item.status not in STATUSES:
        return ItemState(item, "DRAFT", f"{name}: unknown status {item.status!r} (one of {', '.join(STATUSES)})")
    if item.status == "obsolete":
        return ItemState(item, "OBSOLETE", f"{name} ({item.file}) is obsolete")
    if item.kind == "motion_path":
        from ..motion.library import LibraryPath

        lp = LibraryPath.from_dict(dict(item.content))
        ok, why = lp.status()
        if ok:
            return ItemState(item, "APPROVED", f"{name}: approved by {(item.approval or {}).get('user_id', '?')}")
        code = "DRAFT" if "not approved" in why else "CHANGED" if "changed" in why else "BAD_SIGNATURE"
        return ItemState(item, code, f"motion {why} ({item.file})")
    if item.status == "draft":
        return ItemState(item, "DRAFT", f"{name} ({item.file}) is a draft (not approved)")
    a = item.approval
    if not a:
        return ItemState(item, "NOT_APPROVED", f"{name} ({item.file}) has status approved but no QA approval "
                         f"signature in {APPROVALS_FILE}")
    if a.get("role") != APPROVER_ROLE or a.get("meaning") != APPROVAL_MEANING or not is_sha256_hex(
            a.get("record_hash")):
        return ItemState(item, "BAD_SIGNATURE", f"{name}: its approval is not a QA approval signature "
                         f"(role {a.get('role')!r}, meaning {a.get('meaning')!r})")
    if a.get("record_hash") != item.content_hash:
        return ItemState(item, "CHANGED", f"{name} ({item.file}) changed since its approval by {a.get('user_id')} "
                         f"on {a.get('signed_at_iso')} (content hash {item.content_hash[:12]}..., approved "
                         f"{str(a.get('record_hash'))[:12]}...)")
    return ItemState(item, "APPROVED", f"{name}: approved by {a.get('user_id')} on {a.get('signed_at_iso')}")


def status(root: str | Path) -> list[ItemState]:
    """The state of every item of the configuration in ``root``, by kind then id."""
    items = load_items(root)
    return [item_state(items[k]) for k in sorted(items, key=lambda k: (KINDS.index(k[0]), k[1]))]


# ----------------------------------------------------------------------------- whole configuration
_DIGESTS: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
"""File path -> (its stat signature, its SHA-256) when it was last read: the configuration is hashed at
every batch start, and most of its files do not change between two."""
RACY_S = 2.0
"""A file whose modification or status change is more recent than this (seconds) is read again even
when its stat signature is unchanged: file times advance by the kernel's clock tick (a few ms), so two
writes of the same size within one tick can leave the same signature (git's "racily clean" entries)."""


def _file_digest(p: Path) -> str:
    """SHA-256 of ``p``; reused from the last read while its signature (device, inode, size, mtime and
    ctime in ns: ctime cannot be set back by a user) is unchanged and older than :data:`RACY_S`."""
    st = p.stat()
    sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    key = str(p)
    hit = _DIGESTS.get(key)
    if hit is not None and hit[0] == sig and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_S * 1e9:
        return hit[1]
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if len(_DIGESTS) > 4096:
        _DIGESTS.clear()
    _DIGESTS[key] = (sig, digest)
    return digest


def config_manifest(root: str | Path) -> dict[str, str]:
    """SHA-256 of every file of the configuration directory (relative path -> hex), hidden files,
    caches and ``*.tmp`` left out."""
    root = Path(root).absolute()
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts) \
                or p.suffix == ".tmp":
            continue
        out[rel.as_posix()] = _file_digest(p)
    return out


def config_hash(root: str | Path) -> str:
    """The hash of the whole configuration: SHA-256 of the canonical JSON of :func:`config_manifest`
    (every byte of every file, the approvals store included)."""
    return hashlib.sha256(canonical(config_manifest(root)).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- approving
def _set_status_text(text: str, kind: str, item_id: str, new_status: str) -> str:
    """Set the ``status:`` line of one item in the YAML text (inserted after ``version:`` / the id
    line when missing); the rest of the file, comments included, is kept byte for byte."""
    lines = text.splitlines(keepends=True)
    if kind in _DIR_KINDS:
        start, end, indent = 0, len(lines), ""
    else:
        pat = re.compile(rf"^(\s*)-\s+id:\s*['\"]?{re.escape(item_id)}['\"]?\s*(#.*)?$")
        start = next((i for i, ln in enumerate(lines) if pat.match(ln.rstrip("\n"))), -1)
        if start < 0:
            raise ChangeControlError(f"{kind} {item_id!r}: its '- id:' line (block style) was not found")
        m = pat.match(lines[start].rstrip("\n"))
        assert m is not None
        indent = m.group(1) + "  "
        end = start + 1
        while end < len(lines):
            s = lines[end]
            if s.strip() and not s.lstrip().startswith("#") and (len(s) - len(s.lstrip())) < len(indent):
                break
            end += 1
    status_re = re.compile(rf"^{re.escape(indent)}status:[ \t]*(\S+)?[ \t]*(#.*)?$")
    for i in range(start + (0 if kind in _DIR_KINDS else 1), end):
        m = status_re.match(lines[i].rstrip("\n"))
        if m:
            comment = f"  {m.group(2)}" if m.group(2) else ""
            lines[i] = f"{indent}status: {new_status}{comment}\n"
            return "".join(lines)
    version_re = re.compile(rf"^{re.escape(indent)}version:")
    at = next((i for i in range(start, end) if version_re.match(lines[i])), start)
    lines.insert(at + 1, f"{indent}status: {new_status}\n")
    return "".join(lines)


def _item_file(root: Path, item: Item) -> Path:
    return root / item.file


def approve(root: str | Path, kind: str, item_id: str, users: Any, user_id: str, password: str, *,
            record: Any = None) -> Any:
    """QA approval of one item: an e-signature over its content hash, appended to the approvals
    store, and its ``status:`` set to ``approved``. Returns the :class:`~aseptic_cell.auth.directory.Signature`.
    With ``record`` (a batch record store) the signature is also appended to it (kind
    ``signature``, cell level) with the signed canonical content, which re-hashes to the signed
    hash (§11.70; ``cellctl record verify`` checks it): the approval is then also in the
    hash-chained, sealed record, not only in the configuration directory.

    Raises:
        ChangeControlError: unknown kind/item, an obsolete item, a motion path (``cellctl motion
            approve`` re-certifies it first), or a signer who is not QA.
        AuthError / PermissionDenied: wrong password, locked account, role not allowed.
    """
    root = Path(root)
    if kind not in KINDS:
        raise ChangeControlError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if kind == "motion_path":
        raise ChangeControlError("a motion path is approved with `cellctl motion approve --name NAME --user ID` "
                                 "(it re-certifies the path against the live keep-outs first)")
    items = load_items(root)
    item = items.get((kind, item_id))
    if item is None:
        known = sorted(i for k, i in items if k == kind)
        raise ChangeControlError(f"no {kind} {item_id!r} in {root}; known: {known}")
    if item.status == "obsolete":
        raise ChangeControlError(f"{kind} {item_id!r} is obsolete; an obsolete item is not approved again "
                                 "(give the new content a new version)")
    if item.version is None:
        raise ChangeControlError(f"{kind} {item_id!r} ({item.file}) has no integer version")
    action = next((a for a in APPROVE_ACTIONS if a in users.permissions), APPROVE_ACTIONS[-1])
    sig = users.sign(user_id, password, APPROVAL_MEANING, item.content_hash, action=action)
    if sig.role != APPROVER_ROLE:
        raise ChangeControlError(f"approval needs a {APPROVER_ROLE} user, {user_id!r} is {sig.role}")
    if record is not None:  # first: a record that cannot be written leaves nothing approved
        signed = canonical({k: v for k, v in item.content.items() if k != "status"})
        record.append("signature", batch_id="", actor=sig.user_id, role=sig.role, action=sig.action,
                      reason=f"change control: approve {kind} {item_id} v{item.version}",
                      payload={**sig.to_payload(), "signed_content": signed, "item_kind": kind, "item_id": item_id,
                               "item_version": item.version, "item_file": item.file})
    # status line first (content hash unchanged by construction: checked), then the store
    path = _item_file(root, item)
    original = path.read_text(encoding="utf-8")
    _atomic_write(path, _set_status_text(original, kind, item_id, "approved"))
    try:
        after: Item | None = load_items(root).get((kind, item_id))
    except ChangeControlError:
        after = None
    if after is None or after.content_hash != item.content_hash or after.status != "approved":
        _atomic_write(path, original)  # put the file back as it was
        raise ChangeControlError(f"{path}: setting the status line would change the item's content; "
                                 "nothing approved (file left as it was)")
    history = load_approvals(root)
    history.append({"kind": kind, "id": item_id, "version": item.version, "content_hash": item.content_hash,
                    "approval": sig.to_payload()})
    header = ("# Change-control approvals store (aseptic_cell/config/change_control.py): QA e-signatures\n"
              "# (meaning approval) over each item's content hash; append-only history, the last entry of an\n"
              "# item counts. Written by `cellctl config approve`; an edit of an item voids its approval.\n"
              "# Approvals signed with a demo account of users.yaml are for the simulated cell only.\n")
    body = yaml.safe_dump({"version": APPROVALS_FORMAT, "approvals": history}, sort_keys=False,
                          default_flow_style=None, width=120)
    _atomic_write(root / APPROVALS_FILE, header + body)
    return sig


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# ----------------------------------------------------------------------------- diff
@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ItemChange:
    kind: str
    id: str
    change: str  # added | removed | changed | status
    old_hash: str
    new_hash: str
    old_version: int | None
    new_version: int | None
    old_status: str
    new_status: str
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class ConfigDiff:
    a_hash: str
    b_hash: str
    items: tuple[ItemChange, ...]
    files: tuple[tuple[str, str, str], ...]
    """(file, old sha256 or '', new sha256 or '') of every file that differs."""

    def render(self) -> str:
        out = [f"configuration A {self.a_hash}", f"configuration B {self.b_hash}"]
        if not self.items and not self.files:
            out.append("no differences")
            return "\n".join(out)
        out.append(f"{len(self.items)} item(s) changed:")
        for c in self.items:
            vs = [f"v{v}" for v in (c.old_version, c.new_version) if v is not None]
            ver = "->".join(dict.fromkeys(vs)) if c.change in ("changed", "status") else "".join(vs)
            sts = [s for s in (c.old_status, c.new_status) if s]
            st = "->".join(dict.fromkeys(sts))
            out.append(f"  {c.change.upper():8} {c.kind} {c.id} {ver} [{st}] "
                       f"hash {c.old_hash[:12] or '-'} -> {c.new_hash[:12] or '-'}")
            for f in c.fields:
                out.append(f"      {f.path}: {_short(f.old)} -> {_short(f.new)}")
        out.append(f"{len(self.files)} file(s) differ:")
        for name, old, new in self.files:
            out.append(f"  {name}: {old[:12] or '(absent)'} -> {new[:12] or '(absent)'}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"a_hash": self.a_hash, "b_hash": self.b_hash,
                "items": [{**{k: getattr(c, k) for k in ("kind", "id", "change", "old_hash", "new_hash",
                                                        "old_version", "new_version", "old_status", "new_status")},
                           "fields": [{"path": f.path, "old": f.old, "new": f.new} for f in c.fields]}
                          for c in self.items],
                "files": [{"file": n, "old": o, "new": w} for n, o, w in self.files]}


_MISSING = "<absent>"


def _short(v: Any, n: int = 80) -> str:
    s = v if isinstance(v, str) else canonical(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def field_changes(old: Any, new: Any, path: str = "") -> Iterator[FieldChange]:
    """Field-by-field differences of two parsed YAML values (dotted paths, ``[i]`` for list items)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                yield FieldChange(sub, _MISSING, new[k])
            elif k not in new:
                yield FieldChange(sub, old[k], _MISSING)
            else:
                yield from field_changes(old[k], new[k], sub)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from field_changes(a, b, f"{path}[{i}]")
    elif canonical(old) != canonical(new):
        yield FieldChange(path or "<root>", old, new)


def diff(a: str | Path, b: str | Path) -> ConfigDiff:
    """What changed from configuration directory ``a`` to ``b``: items (with field-by-field
    changes and their content hashes) and files (SHA-256)."""
    ia, ib = load_items(a), load_items(b)
    changes: list[ItemChange] = []
    for key in sorted(set(ia) | set(ib), key=lambda k: (KINDS.index(k[0]), k[1])):
        x, y = ia.get(key), ib.get(key)
        if x is None and y is not None:
            changes.append(ItemChange(key[0], key[1], "added", "", y.content_hash, None, y.version, "", y.status))
        elif y is None and x is not None:
            changes.append(ItemChange(key[0], key[1], "removed", x.content_hash, "", x.version, None, x.status, ""))
        elif x is not None and y is not None and (x.content_hash != y.content_hash or x.status != y.status
                                                   or canonical(x.approval) != canonical(y.approval)):
            fields = tuple(field_changes(dict(x.content), dict(y.content)))
            if canonical(x.approval) != canonical(y.approval) and key[0] != "motion_path":
                fields += (FieldChange("(approval)", (x.approval or {}).get("record_hash", _MISSING),
                                       (y.approval or {}).get("record_hash", _MISSING)),)
            kind = "changed" if x.content_hash != y.content_hash else "status"
            changes.append(ItemChange(key[0], key[1], kind, x.content_hash, y.content_hash, x.version, y.version,
                                      x.status, y.status, fields))
    ma, mb = config_manifest(a), config_manifest(b)
    files = tuple((n, ma.get(n, ""), mb.get(n, "")) for n in sorted(set(ma) | set(mb)) if ma.get(n) != mb.get(n))
    return ConfigDiff(config_hash(a), config_hash(b), tuple(changes), files)


def checkout_revision(rev: str, config_dir: str | Path, dest: str | Path) -> Path:
    """Extract the configuration directory as it was at git revision ``rev`` (``git archive``) into
    ``dest``; returns the extracted directory. Raises :class:`ChangeControlError`."""
    config_dir = Path(config_dir).resolve()
    try:
        top = subprocess.run(["git", "-C", str(config_dir), "rev-parse", "--show-toplevel"], check=True,
                             capture_output=True, text=True).stdout.strip()
        rel = config_dir.relative_to(Path(top).resolve()).as_posix()
        tar = subprocess.run(["git", "-C", top, "archive", "--format=tar", rev, "--", rel], check=True,
                             capture_output=True).stdout
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        text = err.decode(errors="replace").strip() if isinstance(err, bytes) else str(err)
        raise ChangeControlError(f"{rev!r} is neither a configuration directory nor a git revision of "
                                 f"{config_dir}: {text or exc}") from None
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")
    return Path(dest) / rel


def diff_specs(a: str, b: str, config_dir: str | Path) -> ConfigDiff:
    """:func:`diff` of two configuration directories or git revisions (of ``config_dir``'s repository)."""
    with tempfile.TemporaryDirectory(prefix="cc-diff-") as tmp:
        dirs = []
        for n, spec in enumerate((a, b)):
            dirs.append(Path(spec) if Path(spec).is_dir() else checkout_revision(spec, config_dir, Path(tmp) / str(n)))
        return diff(dirs[0], dirs[1])


# ----------------------------------------------------------------------------- batch start
@dataclass(frozen=True)
class BatchStartVerdict:
    """The change-control verdict at batch start (:func:`batch_start_check`)."""

    ok: bool
    code: str
    """``OK``, or the refusal code ``CONFIG_<state>`` of the first problem (``CONFIG_DRAFT``,
    ``CONFIG_OBSOLETE``, ``CONFIG_NOT_APPROVED``, ``CONFIG_BAD_SIGNATURE``, ``CONFIG_CHANGED``,
    ``CONFIG_UNREADABLE``)."""
    reason: str
    gmp: bool
    config_hash: str
    items: tuple[ItemState, ...] = ()
    """Every item the recipe uses, with its state."""

    @property
    def problems(self) -> tuple[ItemState, ...]:
        return tuple(s for s in self.items if not s.usable)

    def to_payload(self) -> dict[str, Any]:
        """What run_batch records with the batch start: the configuration hash and each used item."""
        return {"config_hash": self.config_hash, "gmp": self.gmp, "change_control": self.code,
                "items": [{"kind": s.item.kind, "id": s.item.id, "version": s.item.version,
                           "content_hash": s.item.content_hash, "state": s.code} for s in self.items]}


def _used_keys(recipe: Any) -> tuple[list[tuple[str, str]], set[str]]:
    """(the items a recipe names, the poses its robot tasks move to)."""
    from ..scheduling.process import ProcessDefinition

    if isinstance(recipe, ProcessDefinition):
        return [("process", recipe.id)], set()
    keys: list[tuple[str, str]] = [("recipe", recipe.id)]
    poses: set[str] = set()
    for _up, _op, ph in recipe.phases():
        p = ph.params
        if ph.type == "vhp_decontaminate":
            keys.append(("vhp_cycle", str(p["cycle"])))
        elif ph.type in ("autoclave_transfer_in", "autoclave_test"):
            keys.append(("autoclave_program", str(p["program"])))
        elif ph.type == "robot_task":
            poses.update(str(w) for w in list(p.get("waypoints") or [])[1:])
        elif ph.type == "process":  # a patient recipe: its phases come from the process definition
            keys.append(("process", str(p["process"])))
    return list(dict.fromkeys(keys)), poses


def _loaded_differs(cfg: Any, item: Item, recipe: Any) -> bool:
    """True when the object the supervisor will run differs from the file on disk now (edited
    after the configuration was loaded, or changed in memory)."""
    try:
        if item.kind == "recipe":
            from .recipes import BatchRecipe

            return bool(BatchRecipe.model_validate(dict(item.content)) != recipe)
        if item.kind == "vhp_cycle":
            from .devices import VHPCycleRecipe

            return bool(VHPCycleRecipe.model_validate(dict(item.content)) != cfg.vhp_cycles.get(item.id))
        if item.kind == "autoclave_program":
            from .devices import AutoclaveProgram

            return bool(AutoclaveProgram.model_validate(dict(item.content)) != cfg.autoclave_programs.get(item.id))
    except (ValueError, KeyError):
        return True
    return False


_ITEMS_BY_HASH: dict[tuple[str, str], dict[tuple[str, str], Item]] = {}


def _items_of(root: Path, chash: str) -> dict[tuple[str, str], Item]:
    """:func:`load_items` of ``root`` whose files hash to ``chash`` (every byte of every file, read
    just now): parsed once per content — the YAML parse, not the hashing, is what a batch start
    paid (~30 ms per RunBatch; the stateful tests start thousands)."""
    key = (str(root.resolve()), chash)
    items = _ITEMS_BY_HASH.get(key)
    if items is None:
        if len(_ITEMS_BY_HASH) >= 16:
            _ITEMS_BY_HASH.clear()
        items = _ITEMS_BY_HASH[key] = load_items(root)
    return dict(items)


def batch_start_check(cfg: Any, recipe: Any, *, gmp: bool | None = None) -> BatchStartVerdict:
    """Change control at batch start: the hash of the whole configuration and, for a GMP batch, a
    refusal when the recipe or any item it uses (VHP cycles, autoclave programs, the motion library's
    paths ending at a pose its robot tasks visit) is draft, obsolete, not QA-approved, or changed
    since its approval (also: changed on disk after the configuration was loaded).

    Args:
        cfg: the loaded :class:`~aseptic_cell.config.CellConfig` (``cfg.root`` is read again).
        recipe: the :class:`~aseptic_cell.config.recipes.BatchRecipe` about to run (or a
            :class:`~aseptic_cell.scheduling.process.ProcessDefinition`).
        gmp: GMP batch or not; default: a GMP batch when ``recipe`` is one of the configuration's
            master recipes (``cfg.recipes``), an engineering run (not releasable, change control
            reported but not enforced) when it was loaded from a recipe file outside it.
    """
    from ..scheduling.process import ProcessDefinition

    root = Path(cfg.root)
    if gmp is None:
        gmp = isinstance(recipe, ProcessDefinition) or cfg.recipes.get(getattr(recipe, "id", None)) is recipe
    try:
        chash = config_hash(root)
        items = _items_of(root, chash)
    except (OSError, ChangeControlError) as exc:
        return BatchStartVerdict(not gmp, "CONFIG_UNREADABLE" if gmp else "OK",
                                 f"change control: the configuration cannot be read: {exc}", gmp, "")
    keys, poses = _used_keys(recipe)
    keys = keys + sorted(k for k, it in items.items() if k[0] == "motion_path" and dict(it.content).get("to") in poses)
    states: list[ItemState] = []
    for key in keys:
        item = items.get(key)
        if item is None:
            ghost = Item(key[0], key[1], "(not in the configuration)", getattr(recipe, "version", None)
                         if key[0] in ("recipe", "process") else None, "draft", "", {})
            states.append(ItemState(ghost, "DRAFT", f"{key[0]} {key[1]!r} is not an item of the configuration in "
                                    f"{root} (a recipe file outside it is not approved)"))
            continue
        st = item_state(item)
        if st.usable and _loaded_differs(cfg, item, recipe):
            st = ItemState(item, "CHANGED", f"{item.kind} {item.id!r}: the loaded configuration differs from "
                           f"{item.file} on disk (edited after the supervisor loaded it?); reload the configuration")
        states.append(st)
    bad = [s for s in states if not s.usable]
    if not gmp:
        note = "engineering run (recipe outside the configuration's master recipes): not releasable"
        if bad:
            note += "; change control not enforced: " + "; ".join(s.reason for s in bad)
        return BatchStartVerdict(True, "OK", note, False, chash, tuple(states))
    if bad:
        return BatchStartVerdict(False, f"CONFIG_{bad[0].code}",
                                 "GMP batch refused by change control: " + "; ".join(s.reason for s in bad),
                                 True, chash, tuple(states))
    return BatchStartVerdict(True, "OK", f"change control: {len(states)} item(s) approved and unchanged; "
                             f"configuration hash {chash}", True, chash, tuple(states))


def states_table(states: Iterable[ItemState]) -> str:
    rows = [("KIND", "ID", "VERSION", "STATUS", "STATE", "CONTENT HASH", "APPROVED BY / AT")]
    for s in states:
        d = s.to_dict()
        rows.append((d["kind"], d["id"], "-" if d["version"] is None else str(d["version"]), d["status"], d["state"],
                     d["content_hash"][:16], f"{d['approved_by']} {d['approved_at']}".strip() or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
