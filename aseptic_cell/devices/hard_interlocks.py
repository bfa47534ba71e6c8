"""The device layer's own hard interlocks (like a PLC's), on the device's readings.

These are evaluated by the device nodes before a command reaches the backend (and by the
in-process cell used in tests), independently of the supervisor's interlock engine: two
layers (ARCHITECTURE rule 3). Each returns ``(code, reason)`` to refuse, or ``None``.
The devices' controllers keep their own interlocks as well (the sim models refuse too).
"""

from __future__ import annotations

import math
from typing import Any, Callable

ATMOSPHERIC_KPA = 101.325  # standard atmosphere (ISO 2533)

Refusal = tuple[str, str] | None


def _f(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def isolator(name: str, args: dict[str, Any], v: dict[str, Any], cfg: Any) -> Refusal:
    if name == "open_door":
        door = args["door"]
        other = "B" if door == "A" else "A"
        if not v.get(f"hatch.door_{other}.closed"):
            return ("HATCH_OTHER_DOOR_OPEN", f"hatch door {door} cannot open: door {other} is not closed (IL-01)")
        if not v.get(f"hatch.seal_{other}.inflated"):
            return ("HATCH_SEAL_DEFLATED", f"hatch door {door} cannot open: door {other} seal is not inflated (IL-01)")
        dwell = _f(v.get("hatch.dwell_remaining_s"))
        if not dwell <= 0.0:
            return ("HATCH_DWELL", f"hatch door {door} cannot open: dwell not elapsed ({dwell:.1f} s left) (IL-01)")
        if not v.get("dp_in_band"):
            return ("DP_OUT_OF_BAND", f"hatch door {door} cannot open: isolator dP {_f(v.get('dp_pa')):.1f} Pa "
                    "is outside its band (IL-01)")
    elif name == "open_alpha":
        rtp = args["rtp"]
        if not (v.get(f"rtp.{rtp}.beta_docked") and v.get(f"rtp.{rtp}.beta_locked")):
            return ("RTP_NO_BETA", f"{rtp} alpha door cannot open: no beta docked and locked (IL-02)")
    elif name in ("undock_beta", "unlock_beta"):
        rtp = args["rtp"]
        if not v.get(f"rtp.{rtp}.alpha_closed"):
            verb = "undocked" if name == "undock_beta" else "unlocked"
            return ("RTP_ALPHA_OPEN", f"{rtp} beta cannot be {verb}: alpha door is open (IL-03)")
    elif name == "use_glove":
        port = args["port"]
        if v.get(f"glove.{port}.last_test") == "FAIL":
            return ("GLOVE_FAILED", f"glove port {port}: last integrity test FAILED; port blocked (IL-05)")
    return None


def autoclave(name: str, args: dict[str, Any], v: dict[str, Any], cfg: Any) -> Refusal:
    ac = cfg.layout.autoclave
    if name == "open_door":
        side = args["side"]
        other = "unload" if side == "load" else "load"
        if v.get("cycle_running"):
            return ("AC_CYCLE_RUNNING", f"{side} door cannot open while a cycle runs (IL-11)")
        if not v.get(f"{other}_door_closed"):
            return ("AC_OTHER_DOOR_OPEN", f"{side} door cannot open: the {other} door is open (EN 285 §4.3.2)")
        t = _f(v.get("chamber_t_c"))
        if not t < ac.door_open_max_temp_c:
            return ("AC_HOT", f"{side} door cannot open: chamber {t:.1f} C >= {ac.door_open_max_temp_c:g} C (IL-11)")
        gauge = abs(_f(v.get("chamber_p_kpa")) - ATMOSPHERIC_KPA)
        if not gauge <= ac.door_open_max_gauge_kpa:
            return ("AC_PRESSURISED", f"{side} door cannot open: chamber {gauge:.1f} kPa from atmospheric "
                    f"> {ac.door_open_max_gauge_kpa:g} kPa (IL-11)")
        if side == "unload" and not (v.get("unload_released") or v.get("unload_override")):
            return ("AC_UNLOAD_NOT_RELEASED", "clean-side door opens only after a successful sterilisation "
                    "cycle (IL-10, Annex 1 §8.50)")
    elif name == "start_program":
        for side in ("load", "unload"):
            if not v.get(f"{side}_door_gasket_ok"):
                return ("AC_DOOR_NOT_SEALED", f"{side} door is not closed, locked and gasket-sealed (IL-11)")
    return None


def vhp(name: str, args: dict[str, Any], v: dict[str, Any], cfg: Any) -> Refusal:
    if name == "start_cycle" and v.get("cycle_active"):
        return ("VHP_CYCLE_ACTIVE", "a VHP cycle is already active")
    return None


def arm(name: str, args: dict[str, Any], v: dict[str, Any], cfg: Any) -> Refusal:
    if name in ("move_to_pose", "execute_trajectory", "enable_drives") and v.get("protective_stop"):
        return ("PROTECTIVE_STOP", f"protective stop active: {v.get('protective_stop_reason')}; reset it first")
    if name in ("move_to_pose", "execute_trajectory") and not v.get("drives_enabled"):
        return ("DRIVES_OFF", "drives are off (safe torque off): enable them first")
    return None


CHECKS: dict[str, Callable[[str, dict[str, Any], dict[str, Any], Any], Refusal]] = {
    "isolator": isolator, "autoclave": autoclave, "vhp": vhp, "arm": arm}


def precheck(kind: str, name: str, args: dict[str, Any], values: dict[str, Any], cfg: Any) -> Refusal:
    """The device kind's hard interlock for ``name``; ``values`` are the device's readings."""
    return CHECKS[kind](name, args, values, cfg)
