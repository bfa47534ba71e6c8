"""Device command → the supervisor's view of it: which permission (``config/users.yaml``)
and which interlock actions (``config/interlocks.yaml`` guards, with their arguments) apply.

One table, used by the operator path (``/cell/operate``) and by the behaviours, so a command
is checked the same way whoever sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROCESS_KINDS = ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")
"""The process equipment's nodes (:data:`aseptic_cell.devices.process_equipment.PROCESS_KINDS`; issue 14)."""

SAFE_COMMANDS = frozenset({
    ("isolator", "safe_state"), ("vhp", "safe_state"), ("vhp", "abort"), ("autoclave", "safe_state"),
    ("autoclave", "abort"), ("arm", "safe_state"), ("arm", "protective_stop"), ("arm", "disable_drives"),
    *((k, "safe_state") for k in PROCESS_KINDS),
})
"""Commands that make things safer: never blocked by an interlock (any known, enabled user)."""

READ_COMMANDS = frozenset({("vhp", "get_result"), ("autoclave", "get_result"),
                           *((k, "get_result") for k in PROCESS_KINDS if k not in ("incubator", "scanner"))})


@dataclass(frozen=True)
class Guarded:
    permission: str | None
    """users.yaml action the user's role must hold (None: any known user)."""
    checks: tuple[tuple[str, dict[str, str]], ...]
    """Interlock actions with their placeholder arguments."""


def _rtp_door(rtp: str) -> str:
    return f"{rtp.lower()}_alpha"


def classify(node: str, command: str, args: Mapping[str, Any], *, in_recipe: bool = False) -> Guarded:
    """Permission and interlock checks for a device command.

    Args:
        in_recipe: the command comes from a recipe phase (robot motion is then
            ``arm.move_process``, not a manual ``arm.move``).
    """
    a = {k: v for k, v in args.items() if isinstance(v, str)}
    if (node, command) in SAFE_COMMANDS or (node, command) in READ_COMMANDS:
        return Guarded(None, ())
    if node == "isolator":
        if command == "open_door":
            return Guarded("hatch.open_door", (("hatch.open_door", {"door": a.get("door", "")}),))
        if command == "close_door":
            return Guarded("door.close", (("door.close", {"door": f"hatch_{a.get('door', '').lower()}"}),))
        if command in ("dock_beta", "lock_beta"):
            return Guarded("rtp.dock_beta", ())
        if command in ("unlock_beta", "undock_beta"):
            return Guarded("rtp.undock_beta", (("rtp.undock_beta", {"rtp": a.get("rtp", "")}),))
        if command == "open_alpha":
            # the beta's contents enter the isolator: product exposure (IL-04, IL-12)
            return Guarded("rtp.open_alpha", (("rtp.open_alpha", {"rtp": a.get("rtp", "")}),
                                              ("product.open_container", {})))
        if command == "close_alpha":
            return Guarded("door.close", (("door.close", {"door": _rtp_door(a.get("rtp", ""))}),))
        if command == "use_glove":
            return Guarded("glove.use", (("glove.use", {"port": a.get("port", "")}),))
        if command in ("release_glove", "extend_glove", "retract_glove"):
            return Guarded("glove.use", ())
        if command == "start_glove_test":
            return Guarded("glove.test", ())
        if command == "start_leak_test":
            return Guarded("vhp.start_cycle", ())
        if command == "open_container":  # product exposed in grade A (IL-04, IL-12)
            return Guarded("product.open_container", (("product.open_container", {}),))
        if command == "close_container":
            return Guarded("product.open_container", ())
        if command == "start_hatch_decon":  # an automatic, recorded chamber cycle
            return Guarded("hatch.decontaminate", ())
        if command == "record_hatch_wipe_down":  # its own permission, signed (users.yaml)
            return Guarded("hatch.wipe_down", ())
    if node == "vhp":
        if command == "start_cycle":
            return Guarded("vhp.start_cycle", (("vhp.start_cycle", {}),))
        if command == "refill_reservoir":
            return Guarded("vhp.start_cycle", ())
    if node == "autoclave":
        side = a.get("side", "")
        if command == "open_door" and side == "load":
            return Guarded("autoclave.open_load", (("autoclave.open_load", {}),))
        if command == "open_door":
            return Guarded("autoclave.open_unload", (("autoclave.open_unload", {}), ("autoclave.transfer_in", {}),
                                                     ("product.open_container", {})))
        if command == "close_door":
            return Guarded("door.close", (("door.close", {"door": f"autoclave_{side}"}),))
        if command == "start_program":
            return Guarded("autoclave.start_program", (("autoclave.start_program", {}),))
        if command == "override_unload":
            return Guarded("override", (("override", {}),))
    if node == "arm":
        if command == "enable_drives":
            return Guarded("arm.enable", (("arm.enable", {}),))
        if command in ("move_to_pose", "execute_trajectory"):
            move = "arm.move_process" if in_recipe else "arm.move"
            return Guarded(None if in_recipe else "arm.move", ((move, {}),))
        if command in ("reset_protective_stop",):
            return Guarded("arm.recover", ())
        if command == "set_mode":
            return Guarded("arm.move", ())
    if node in PROCESS_KINDS:  # a manual process-equipment command outside a recipe (users.yaml)
        return Guarded("equipment.operate", ())
    # unknown combinations: deny by default through the permission catalogue
    return Guarded(f"{node}.{command}", ())
