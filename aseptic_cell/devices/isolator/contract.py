"""The isolator's contract: its commands, the interlock signals it publishes, its own hard
interlock (like its PLC's) and its OPC UA mapping. Its configuration model is ``config.py``,
its ROS node ``node.py``; its process model is in ``sim/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import CellConfig
from ..catalogue import REASON, USER, Arg, CommandSpec, command
from ..values import Refusal, bool_or_none, num_or_nan, num_or_none

DOOR = Arg("door", "str", choices=("A", "B"))
RTP = Arg("rtp", "str")
PORT = Arg("port", "str")

COMMANDS: tuple[CommandSpec, ...] = (
    command("open_door", DOOR, description="open pass-through hatch door A (room) or B (isolator)"),
    command("close_door", DOOR),
    command("mark_hatch_decontaminated", description="hatch chamber decontamination confirmed"),
    command("dock_beta", RTP, Arg("beta_id", "str"), Arg("sterile_status", "str")),
    command("lock_beta", RTP),
    command("unlock_beta", RTP),
    command("undock_beta", RTP),
    command("open_alpha", RTP),
    command("close_alpha", RTP),
    command("use_glove", PORT, USER),
    command("release_glove", PORT),
    command("extend_glove", PORT),
    command("retract_glove", PORT),
    command("start_glove_test", PORT, USER, Arg("batch_id", "str", required=False)),
    command("start_leak_test"),
    command("safe_state", REASON, moves=False, description="hold: no further process commands"),
)


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], v: Mapping[str, Any], cfg: CellConfig) -> Refusal:
    if name == "open_door":
        door = args["door"]
        other = "B" if door == "A" else "A"
        if not v.get(f"hatch.door_{other}.closed"):
            return ("HATCH_OTHER_DOOR_OPEN", f"hatch door {door} cannot open: door {other} is not closed (IL-01)")
        if not v.get(f"hatch.seal_{other}.inflated"):
            return ("HATCH_SEAL_DEFLATED", f"hatch door {door} cannot open: door {other} seal is not inflated (IL-01)")
        dwell = num_or_nan(v.get("hatch.dwell_remaining_s"))
        if not dwell <= 0.0:
            return ("HATCH_DWELL", f"hatch door {door} cannot open: dwell not elapsed ({dwell:.1f} s left) (IL-01)")
        if not v.get("dp_in_band"):
            return ("DP_OUT_OF_BAND", f"hatch door {door} cannot open: isolator dP {num_or_nan(v.get('dp_pa')):.1f} Pa "
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


# --------------------------------------------------------------------------- signals
def signals(v: Mapping[str, Any], cfg: CellConfig) -> dict[str, Any]:
    iso = cfg.layout.isolator
    s: dict[str, Any] = {}
    closed = {}
    for d in ("A", "B"):
        closed[d] = bool_or_none(v.get(f"hatch.door_{d}.closed"))
        s[f"isolator.hatch.door_{d}.closed"] = closed[d]
        s[f"isolator.hatch.seal_{d}.inflated"] = bool_or_none(v.get(f"hatch.seal_{d}.inflated"))
    remaining = num_or_none(v.get("hatch.dwell_remaining_s"))
    if closed["A"] is None or closed["B"] is None or remaining is None:
        s["isolator.hatch.dwell_elapsed_s"] = None
    elif not (closed["A"] and closed["B"]):
        s["isolator.hatch.dwell_elapsed_s"] = 0.0
    else:
        s["isolator.hatch.dwell_elapsed_s"] = max(0.0, iso.hatch.dwell_s - remaining)
    s["isolator.dp_in_band"] = bool_or_none(v.get("dp_in_band"))
    s["isolator.dp_pa"] = num_or_none(v.get("dp_pa"))
    s["isolator.decon_status"] = v.get("decon_status") if isinstance(v.get("decon_status"), str) else None
    s["isolator.gloves_extended"] = bool_or_none(v.get("gloves_extended"))
    s["isolator.any_glove_in_use"] = bool_or_none(v.get("any_glove_in_use"))
    s["isolator.leak_test_passed"] = bool_or_none(v.get("leak_test.passed"))
    s["isolator.particles.monitor_running"] = bool_or_none(v.get("particles.monitor_running"))
    flow = num_or_none(v.get("particles.sample_flow_l_min"))
    # sample flow >= 28.3 L/min (1 ft3/min) [TSI] [V], [ANNEX1-2022 §9] [M]; the nominal is set in cell.yaml
    s["isolator.particles.sample_flow_ok"] = None if flow is None else flow >= 0.95 * iso.particles.sample_flow_l_min
    s["isolator.particles.action_excursion"] = bool_or_none(v.get("particles.action_excursion"))
    t = num_or_none(v.get("t"))
    for r in iso.rtps:
        for key in ("beta_docked", "beta_locked", "alpha_closed"):
            s[f"isolator.rtp.{r.id}.{key}"] = bool_or_none(v.get(f"rtp.{r.id}.{key}"))
        alpha = v.get(f"rtp.{r.id}.alpha_door")
        door = f"{r.id.lower()}_alpha"
        s[f"door.{door}.open"] = None if alpha is None else alpha == "open"
        s[f"door.{door}.locked"] = None if alpha is None else alpha in ("open", "closed")
    for g in iso.glove_ports:
        last = v.get(f"glove.{g.id}.last_test")
        s[f"isolator.glove.{g.id}.last_test"] = last if isinstance(last, str) else None
        lt = num_or_none(v.get(f"glove.{g.id}.last_test_time"))
        s[f"isolator.glove.{g.id}.test_age_h"] = (t - lt) / 3600.0 if (t is not None and lt is not None) else None
        s[f"isolator.glove.{g.id}.in_use"] = bool_or_none(v.get(f"glove.{g.id}.in_use"))
        s[f"isolator.glove.{g.id}.visual_defect"] = bool(v.get(f"glove.{g.id}.visual_defect", False))
    for d, key in (("A", "hatch_a"), ("B", "hatch_b")):
        phase = v.get(f"hatch.door_{d}")
        s[f"door.{key}.open"] = None if phase is None else phase == "open"
        s[f"door.{key}.locked"] = None if phase is None else phase in ("open", "closed")
    return s


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Transfer", ("hatch.", "rtp.")),
    ("GloveSystem", ("glove.", "any_glove_in_use", "gloves_extended")),
    ("Decon", ("decon_", "leak_test.")),
    ("Environment", ("",)),
)
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
DEVICE_CLASS = "Isolator (LADS Device)"
MODEL = "Emulated ATMP isolator"
