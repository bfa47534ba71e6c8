"""Motion library under change control: station-to-station joint paths that a QA user has
approved with an electronic signature.

File format (``config/motion_library.yaml``)::

    version: 1
    paths:
      - name: rtp_pick__incubator_place       # unique
        from: rtp_pick                        # named poses of arm.yaml
        to: incubator_place
        speed_class: transit
        conditions: []                        # keep-out conditions it was planned under
        waypoints: [[q1..q6], ...]            # joint rad, first = from pose, last = to pose
        content_hash: <sha256 hex>            # of the canonical JSON of the fields above
        planned: {by: eng1, at: <ISO UTC>, seed: 1, planner: ...}
        review: {duration_s, min_clearance_m, speed_bound_max_m_s, clearance_profile: [[t_s, m], ...], plot}
        approval: null | {user_id, full_name, role, meaning, signed_at, signed_at_iso, record_hash, action}

A path is usable only if its stored ``content_hash`` equals the hash recomputed from its
content, and it carries an approval whose ``record_hash`` is that hash, given by a user of
role ``qa`` with meaning ``approval``. Any change to the name, poses, speed class,
conditions or a waypoint changes the hash and voids the approval. The approval is the
e-signature of :meth:`aseptic_cell.auth.UserDirectory.sign` (both components re-entered,
the signer's role checked against the permission catalogue).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aseptic_cell.auth import UserDirectory
from aseptic_cell.auth.directory import Signature

#: Permission checked when signing an approval: ``motion.approve`` if the site's
#: catalogue defines it, otherwise ``recipe.approve`` (QA, meaning approval): an approved
#: path is master data of the process, like a released recipe.
APPROVE_ACTIONS = ("motion.approve", "recipe.approve")
APPROVER_ROLE = "qa"
APPROVAL_MEANING = "approval"
FORMAT_VERSION = 1


class LibraryError(ValueError):
    """The library file is malformed, or an operation on it is not allowed."""


def content_hash(name: str, from_pose: str, to_pose: str, speed_class: str, conditions: Iterable[str],
                 waypoints: np.ndarray) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, no spaces, exact float repr) of a path."""
    body = {
        "name": name,
        "from": from_pose,
        "to": to_pose,
        "speed_class": speed_class,
        "conditions": sorted(conditions),
        "waypoints": [[float(v) for v in row] for row in np.asarray(waypoints, dtype=np.float64)],
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class LibraryPath:
    """One station-to-station path of the library."""

    name: str
    from_pose: str
    to_pose: str
    waypoints: np.ndarray
    speed_class: str = "transit"
    conditions: tuple[str, ...] = ()
    content_hash: str = ""
    planned: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    approval: dict[str, Any] | None = None

    def computed_hash(self) -> str:
        return content_hash(self.name, self.from_pose, self.to_pose, self.speed_class, self.conditions,
                            self.waypoints)

    def status(self) -> tuple[bool, str]:
        """(usable, reason): usable only if unchanged since approval and approved by QA."""
        actual = self.computed_hash()
        if self.content_hash != actual:
            return False, f"path {self.name!r} changed since it was recorded (hash mismatch)"
        a = self.approval
        if not a:
            return False, f"path {self.name!r} is not approved"
        if a.get("record_hash") != actual:
            return False, f"path {self.name!r} changed since its approval (hash mismatch)"
        if a.get("role") != APPROVER_ROLE or a.get("meaning") != APPROVAL_MEANING:
            return False, f"path {self.name!r}: approval is not a QA approval signature"
        return True, "approved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": self.from_pose,
            "to": self.to_pose,
            "speed_class": self.speed_class,
            "conditions": list(self.conditions),
            "waypoints": [[float(v) for v in row] for row in self.waypoints],
            "content_hash": self.content_hash,
            "planned": self.planned,
            "review": self.review,
            "approval": self.approval,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibraryPath:
        try:
            wp = np.array(d["waypoints"], dtype=np.float64)
            if wp.ndim != 2 or wp.shape[1] != 6 or len(wp) < 2 or not np.isfinite(wp).all():
                raise ValueError("waypoints must be >= 2 rows of 6 finite joint values")
            if d.get("speed_class", "transit") not in ("transit", "near_product"):
                raise ValueError(f"unknown speed class {d.get('speed_class')!r}")
            return cls(
                name=str(d["name"]), from_pose=str(d["from"]), to_pose=str(d["to"]), waypoints=wp,
                speed_class=str(d.get("speed_class", "transit")),
                conditions=tuple(sorted(str(c) for c in d.get("conditions") or [])),
                content_hash=str(d.get("content_hash", "")), planned=dict(d.get("planned") or {}),
                review=dict(d.get("review") or {}), approval=d.get("approval") or None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            label = d.get("name", "?") if isinstance(d, dict) else repr(d)
            raise LibraryError(f"malformed library path {label}: {exc}") from None


@dataclass
class MotionLibrary:
    """The library file's paths, by name."""

    paths: dict[str, LibraryPath] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> MotionLibrary:
        """Load a library file; a missing file is an empty library."""
        p = Path(path)
        if not p.exists():
            return cls({}, p)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise LibraryError(f"{p}: malformed YAML: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise LibraryError(f"{p}: expected a mapping with version: {FORMAT_VERSION}")
        lib = cls({}, p)
        for d in data.get("paths") or []:
            lp = LibraryPath.from_dict(d)
            if lp.name in lib.paths:
                raise LibraryError(f"{p}: path name {lp.name!r} repeated")
            lib.paths[lp.name] = lp
        return lib

    def save(self, path: str | Path | None = None) -> Path:
        p = Path(path) if path is not None else self.source
        if p is None:
            raise LibraryError("no file to save the library to")
        header = ("# Motion library (aseptic_cell.motion.library): station-to-station joint paths.\n"
                  "# Written by `cellctl motion plan` / `cellctl motion approve`; an edit by hand voids the\n"
                  "# approval (content hash). Only QA-approved, unchanged paths are used at run time.\n"
                  "# Approvals signed with a demo account of users.yaml are for the simulated cell\n"
                  "# only: on a real site plan and approve every path again with named QA users.\n")
        body = {"version": FORMAT_VERSION, "paths": [lp.to_dict() for lp in self.paths.values()]}
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120),
                       encoding="utf-8")
        tmp.replace(p)
        self.source = p
        return p

    def propose(self, entry: LibraryPath) -> LibraryPath:
        """Add or replace a path as proposed (unapproved); its hash is computed here."""
        entry.content_hash = entry.computed_hash()
        entry.approval = None
        self.paths[entry.name] = entry
        return entry

    def approve(self, name: str, users: UserDirectory, user_id: str, password: str) -> Signature:
        """QA approval of ``name`` with an e-signature over its content hash.

        Raises:
            LibraryError: unknown path, or changed since it was recorded.
            AuthError / PermissionDenied: wrong password, locked account, role not allowed.
        """
        lp = self.paths.get(name)
        if lp is None:
            raise LibraryError(f"no path named {name!r} in the library")
        h = lp.computed_hash()
        if lp.content_hash != h:
            raise LibraryError(f"path {name!r} changed since it was recorded (hash mismatch); plan it again")
        action = next((a for a in APPROVE_ACTIONS if a in users.permissions), APPROVE_ACTIONS[-1])
        sig = users.sign(user_id, password, APPROVAL_MEANING, h, action=action)
        if sig.role != APPROVER_ROLE:
            raise LibraryError(f"approval needs a {APPROVER_ROLE} user, {user_id!r} is {sig.role}")
        lp.approval = sig.to_payload()
        return sig

    def revoke(self, name: str) -> None:
        """Remove the approval of ``name`` (it stays in the library as proposed)."""
        if name not in self.paths:
            raise LibraryError(f"no path named {name!r} in the library")
        self.paths[name].approval = None

    def candidates(self, to_pose: str) -> list[LibraryPath]:
        """Every path ending at ``to_pose``, approved or not."""
        return [lp for lp in self.paths.values() if lp.to_pose == to_pose]
