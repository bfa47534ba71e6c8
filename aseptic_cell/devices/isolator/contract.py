"""The isolator's contract: its commands, the interlock signals it publishes, its own hard
interlock (like its PLC's) and its OPC UA mapping. Its configuration model is ``config.py``,
its ROS node ``node.py``; its process model is in ``sim/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import CellConfig
from ..catalogue import REASON, USER, Arg, CommandSpec, command
from ..values import Refusal, bool_or_none, num_or_none, str_or_none

DOOR = Arg("door", "str", choices=("A", "B"))
RTP = Arg("rtp", "str")
PORT = Arg("port", "str")

COMMANDS: tuple[CommandSpec, ...] = (
    command("open_door", DOOR, description="open pass-through hatch door A (room) or B (isolator)"),
    command("close_door", DOOR),
    command("start_hatch_decon", USER, description="start the hatch chamber's decontamination cycle"),
    command("record_hatch_wipe_down", USER, REASON,
            description="a manual wipe-down of the hatch chamber, where the site allows it (signed)"),
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
    command("open_container", Arg("station", "str"),
            description="a product container opened at a station (its first-air keep-out becomes active)"),
    command("close_container", Arg("station", "str")),
    command("safe_state", REASON, moves=False, description="hold: no further process commands"),
)


def container_stations(cfg: CellConfig) -> list[str]:
    """Stations whose open container activates a keep-out (``container_open:<station>`` boxes)."""
    out: list[str] = []
    for b in cfg.geometry.boxes:
        kind, _, ref = b.active.partition(":")
        if kind == "container_open" and ref not in out:
            out.append(ref)
    return out


# --------------------------------------------------------------------------- typed readings
PARTICLE_VALUES = ("0_5_per_m3", "5_0_per_m3", "5_0_count")
PARTICLE_FLAGS = ("0_5_alert", "0_5_action", "5_0_alert", "5_0_action")


@dataclass(frozen=True)
class HatchDoor:
    closed: bool | None
    seal_inflated: bool | None
    phase: str | None
    """``open``, ``closed`` (end positions, locked there) or a travelling phase."""


@dataclass(frozen=True)
class Rtp:
    beta_docked: bool | None
    beta_locked: bool | None
    alpha_closed: bool | None
    alpha_door: str | None


@dataclass(frozen=True)
class GlovePort:
    in_use: bool | None
    last_test: str | None
    last_test_time: float | None
    visual_defect: bool | None


@dataclass(frozen=True)
class IsolatorReadings:
    """What the isolator's controller reports, typed; None = missing or malformed (unknown)."""

    t: float | None
    dp_pa: float | None
    dp_in_band: bool | None
    hatch: dict[str, HatchDoor]
    dwell_remaining_s: float | None
    decon_status: str | None
    gloves_extended: bool | None
    any_glove_in_use: bool | None
    leak_test_passed: bool | None
    monitor_running: bool | None
    sample_flow_l_min: float | None
    action_excursion: bool | None
    rtps: dict[str, Rtp]
    gloves: dict[str, GlovePort]
    particles: dict[str, float | bool | None] = field(default_factory=dict)
    """Grade-A counter readings and flags: ``0_5_per_m3``, ``5_0_per_m3``, ``5_0_count`` and
    ``0_5_alert`` / ``0_5_action`` / ``5_0_alert`` / ``5_0_action`` (EM alarms, Annex 1 §9 [ANNEX1-2022] [M])."""
    airflow_m_s: float | None = None
    stations: dict[str, bool | None] = field(default_factory=dict)
    """Station id -> a product container is open there (lid sensor); the stations are those with a
    ``container_open:<station>`` keep-out in geometry.yaml."""

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: CellConfig) -> IsolatorReadings:
        iso = cfg.layout.isolator
        return cls(
            t=num_or_none(v.get("t")),
            dp_pa=num_or_none(v.get("dp_pa")),
            dp_in_band=bool_or_none(v.get("dp_in_band")),
            hatch={d: HatchDoor(bool_or_none(v.get(f"hatch.door_{d}.closed")),
                                bool_or_none(v.get(f"hatch.seal_{d}.inflated")),
                                str_or_none(v.get(f"hatch.door_{d}"))) for d in ("A", "B")},
            dwell_remaining_s=num_or_none(v.get("hatch.dwell_remaining_s")),
            decon_status=str_or_none(v.get("decon_status")),
            gloves_extended=bool_or_none(v.get("gloves_extended")),
            any_glove_in_use=bool_or_none(v.get("any_glove_in_use")),
            leak_test_passed=bool_or_none(v.get("leak_test.passed")),
            monitor_running=bool_or_none(v.get("particles.monitor_running")),
            sample_flow_l_min=num_or_none(v.get("particles.sample_flow_l_min")),
            action_excursion=bool_or_none(v.get("particles.action_excursion")),
            rtps={r.id: Rtp(bool_or_none(v.get(f"rtp.{r.id}.beta_docked")),
                            bool_or_none(v.get(f"rtp.{r.id}.beta_locked")),
                            bool_or_none(v.get(f"rtp.{r.id}.alpha_closed")),
                            str_or_none(v.get(f"rtp.{r.id}.alpha_door"))) for r in iso.rtps},
            gloves={g.id: GlovePort(bool_or_none(v.get(f"glove.{g.id}.in_use")),
                                    str_or_none(v.get(f"glove.{g.id}.last_test")),
                                    num_or_none(v.get(f"glove.{g.id}.last_test_time")),
                                    bool_or_none(v.get(f"glove.{g.id}.visual_defect")))
                    for g in iso.glove_ports},
            stations={st: bool_or_none(v.get(f"station.{st}.container_open")) for st in container_stations(cfg)},
            particles={**{k: num_or_none(v.get(f"particles.{k}")) for k in PARTICLE_VALUES},
                       **{k: bool_or_none(v.get(f"particles.{k}")) for k in PARTICLE_FLAGS}},
            airflow_m_s=num_or_none(v.get("airflow_m_s")),
        )


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], r: IsolatorReadings, cfg: CellConfig) -> Refusal:
    """Unknown is unsafe: a permissive that is not reported True refuses."""
    if name == "open_door":
        door = args["door"]
        other = "B" if door == "A" else "A"
        if r.hatch[other].closed is not True:
            return ("HATCH_OTHER_DOOR_OPEN", f"hatch door {door} cannot open: door {other} is not closed (IL-01)")
        if r.hatch[other].seal_inflated is not True:
            return ("HATCH_SEAL_DEFLATED", f"hatch door {door} cannot open: door {other} seal is not inflated (IL-01)")
        dwell = math.nan if r.dwell_remaining_s is None else r.dwell_remaining_s
        if not dwell <= 0.0:
            return ("HATCH_DWELL", f"hatch door {door} cannot open: dwell not elapsed ({dwell:.1f} s left) (IL-01)")
        if r.dp_in_band is not True:
            dp = math.nan if r.dp_pa is None else r.dp_pa
            return ("DP_OUT_OF_BAND", f"hatch door {door} cannot open: isolator dP {dp:.1f} Pa "
                    "is outside its band (IL-01)")
    elif name == "open_alpha":
        rtp = r.rtps.get(args["rtp"])
        if rtp is None or not (rtp.beta_docked is True and rtp.beta_locked is True):
            return ("RTP_NO_BETA", f"{args['rtp']} alpha door cannot open: no beta docked and locked (IL-02)")
    elif name in ("undock_beta", "unlock_beta"):
        rtp = r.rtps.get(args["rtp"])
        if rtp is None or rtp.alpha_closed is not True:
            verb = "undocked" if name == "undock_beta" else "unlocked"
            return ("RTP_ALPHA_OPEN", f"{args['rtp']} beta cannot be {verb}: alpha door is open (IL-03)")
    elif name == "use_glove":
        port = args["port"]
        glove = r.gloves.get(port)
        if glove is not None and glove.last_test == "FAIL":
            return ("GLOVE_FAILED", f"glove port {port}: last integrity test FAILED; port blocked (IL-05)")
    return None


# --------------------------------------------------------------------------- signals
def signals(r: IsolatorReadings, cfg: CellConfig) -> dict[str, Any]:
    iso = cfg.layout.isolator
    s: dict[str, Any] = {}
    for d in ("A", "B"):
        s[f"isolator.hatch.door_{d}.closed"] = r.hatch[d].closed
        s[f"isolator.hatch.seal_{d}.inflated"] = r.hatch[d].seal_inflated
    a, b, remaining = r.hatch["A"].closed, r.hatch["B"].closed, r.dwell_remaining_s
    if a is None or b is None or remaining is None:
        s["isolator.hatch.dwell_elapsed_s"] = None
    elif not (a and b):
        s["isolator.hatch.dwell_elapsed_s"] = 0.0
    else:
        s["isolator.hatch.dwell_elapsed_s"] = max(0.0, iso.hatch.dwell_s - remaining)
    s["isolator.dp_in_band"] = r.dp_in_band
    s["isolator.dp_pa"] = r.dp_pa
    s["isolator.decon_status"] = r.decon_status
    s["isolator.gloves_extended"] = r.gloves_extended
    s["isolator.any_glove_in_use"] = r.any_glove_in_use
    s["isolator.leak_test_passed"] = r.leak_test_passed
    s["isolator.particles.monitor_running"] = r.monitor_running
    flow = r.sample_flow_l_min
    # sample flow >= 28.3 L/min (1 ft3/min) [TSI] [V], [ANNEX1-2022 §9] [M]; the nominal is set in cell.yaml
    s["isolator.particles.sample_flow_ok"] = None if flow is None else flow >= 0.95 * iso.particles.sample_flow_l_min
    s["isolator.particles.action_excursion"] = r.action_excursion
    for k, val in r.particles.items():
        s[f"isolator.particles.{k}"] = val
    s["isolator.airflow_m_s"] = r.airflow_m_s
    for rid, rtp in r.rtps.items():
        s[f"isolator.rtp.{rid}.beta_docked"] = rtp.beta_docked
        s[f"isolator.rtp.{rid}.beta_locked"] = rtp.beta_locked
        s[f"isolator.rtp.{rid}.alpha_closed"] = rtp.alpha_closed
        door = f"{rid.lower()}_alpha"
        s[f"door.{door}.open"] = None if rtp.alpha_door is None else rtp.alpha_door == "open"
        s[f"door.{door}.locked"] = None if rtp.alpha_door is None else rtp.alpha_door in ("open", "closed")
    for gid, g in r.gloves.items():
        s[f"isolator.glove.{gid}.last_test"] = g.last_test
        s[f"isolator.glove.{gid}.test_age_h"] = ((r.t - g.last_test_time) / 3600.0
                                                  if (r.t is not None and g.last_test_time is not None) else None)
        s[f"isolator.glove.{gid}.in_use"] = g.in_use
        # isolator.glove.<port>.visual_defect is NOT published here: a person sees the glove, the
        # isolator does not; the supervisor publishes it from the recorded visual checks (IL-05)
    for st, is_open in r.stations.items():  # activates the first-air keep-out container_open:<st>
        s[f"isolator.station.{st}.container_open"] = is_open
    for d, key in (("A", "hatch_a"), ("B", "hatch_b")):
        phase = r.hatch[d].phase
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

Readings = IsolatorReadings
"""This kind's typed readings (the name the aggregators use)."""
