"""The HMI's request bodies (validated, bounded) and the mapping of HMI requests to
permission actions, device nodes and catalogue commands."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aseptic_cell.auth import MEANINGS

Text = Annotated[str, Field(max_length=500)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


# ---------------------------------------------------------------------------- request bodies
class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginBody(Body):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class SignatureBody(Body):
    """Part 11 §11.200: both components re-entered; §11.50: the meaning is stated."""

    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]
    meaning: Literal[MEANINGS]  # type: ignore[valid-type]


class BatchStartBody(Body):
    recipe_id: Ident
    batch_id: Ident
    reason: Text = ""


class BatchCommandBody(Body):
    reason: Text = ""
    batch: Ident | Literal[""] = ""  # a patient batch (issue 14); empty = the campaign batch
    signature: SignatureBody | None = None


class DoorBody(Body):
    door: Literal["hatch_a", "hatch_b", "autoclave_load", "autoclave_unload"]
    command: Literal["open", "close"]
    reason: Text = ""


class PortBody(Body):
    rtp: Ident
    command: Literal["dock_beta", "lock_beta", "unlock_beta", "undock_beta", "open_alpha", "close_alpha"]
    beta_id: Ident | None = None
    sterile_status: Literal["sterile", "not_sterile", "unknown"] | None = None
    reason: Text = ""


class GloveBody(Body):
    port: Ident
    command: Literal["test", "use", "release", "extend", "retract"]
    reason: Text = ""


class AckBody(Body):
    comment: Text = ""


class BypassRequestBody(Body):
    rule: Annotated[str, Field(pattern=r"^(IL|RB)-\d{2}[A-Z]?$")]
    duration_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
    reason: Annotated[str, Field(min_length=10, max_length=500)]
    signature: SignatureBody | None = None


class BypassApproveBody(Body):
    reason: Annotated[str, Field(min_length=5, max_length=500)]
    signature: SignatureBody | None = None


class BypassRemoveBody(Body):
    reason: Annotated[str, Field(min_length=5, max_length=500)]


class ShelveBody(Body):
    duration_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
    reason: Annotated[str, Field(min_length=5, max_length=500)]
    signature: SignatureBody | None = None


class UnshelveBody(Body):
    reason: Text = ""


class RecoverBody(Body):
    reason: Annotated[str, Field(min_length=5, max_length=500)]
    signature: SignatureBody | None = None


DeviceNode = Literal["isolator", "vhp", "autoclave", "arm"]
BatchVerb = Literal["hold", "restart", "pause", "resume", "stop", "abort", "reset"]

# ---------------------------------------------------------------------------- command mapping
# HMI request -> (permission action in users.yaml, device node, catalogue command, args)
_HATCH = {"hatch_a": "A", "hatch_b": "B"}
_AUTOCLAVE = {"autoclave_load": "load", "autoclave_unload": "unload"}
PORT_ACTIONS = {
    "dock_beta": "rtp.dock_beta",
    "lock_beta": "rtp.dock_beta",
    "unlock_beta": "rtp.undock_beta",
    "undock_beta": "rtp.undock_beta",
    "open_alpha": "rtp.open_alpha",
    "close_alpha": "door.close",
}
GLOVE = {
    "test": ("glove.test", "start_glove_test"),
    "use": ("glove.use", "use_glove"),
    "release": ("glove.use", "release_glove"),
    "extend": ("glove.use", "extend_glove"),
    "retract": ("glove.use", "retract_glove"),
}


def door_command(body: DoorBody) -> tuple[str, str, str, dict[str, Any]]:
    if body.door in _HATCH:
        action = "hatch.open_door" if body.command == "open" else "door.close"
        return action, "isolator", f"{body.command}_door", {"door": _HATCH[body.door]}
    side = _AUTOCLAVE[body.door]
    action = f"autoclave.open_{side}" if body.command == "open" else "door.close"
    return action, "autoclave", f"{body.command}_door", {"side": side}
