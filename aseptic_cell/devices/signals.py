"""Device readings → interlock signals (the names of :data:`aseptic_cell.interlocks.KNOWN_SIGNALS`).

One mapping, used by the device nodes (published as JSON on ``/cell/<node>/signals``) and by
the in-process cell used in tests, so the supervisor sees the same signals whatever the
backend. A reading that is missing or not finite maps to ``None`` — which the engine treats
as unsafe — never to a default that looks safe.
"""

from __future__ import annotations

import math
from typing import Any

ATMOSPHERIC_KPA = 101.325  # standard atmosphere (ISO 2533)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def isolator_signals(v: dict[str, Any], cfg: Any) -> dict[str, Any]:
    iso = cfg.layout.isolator
    s: dict[str, Any] = {}
    closed = {}
    for d in ("A", "B"):
        closed[d] = _bool(v.get(f"hatch.door_{d}.closed"))
        s[f"isolator.hatch.door_{d}.closed"] = closed[d]
        s[f"isolator.hatch.seal_{d}.inflated"] = _bool(v.get(f"hatch.seal_{d}.inflated"))
    remaining = _num(v.get("hatch.dwell_remaining_s"))
    if closed["A"] is None or closed["B"] is None or remaining is None:
        s["isolator.hatch.dwell_elapsed_s"] = None
    elif not (closed["A"] and closed["B"]):
        s["isolator.hatch.dwell_elapsed_s"] = 0.0
    else:
        s["isolator.hatch.dwell_elapsed_s"] = max(0.0, iso.hatch.dwell_s - remaining)
    s["isolator.dp_in_band"] = _bool(v.get("dp_in_band"))
    s["isolator.dp_pa"] = _num(v.get("dp_pa"))
    s["isolator.decon_status"] = v.get("decon_status") if isinstance(v.get("decon_status"), str) else None
    s["isolator.gloves_extended"] = _bool(v.get("gloves_extended"))
    s["isolator.any_glove_in_use"] = _bool(v.get("any_glove_in_use"))
    s["isolator.leak_test_passed"] = _bool(v.get("leak_test.passed"))
    s["isolator.particles.monitor_running"] = _bool(v.get("particles.monitor_running"))
    flow = _num(v.get("particles.sample_flow_l_min"))
    # sample flow >= 28 L/min (1 ft3/min) [V] [TSI] (domain spec §1.6); configured nominal in cell.yaml
    s["isolator.particles.sample_flow_ok"] = None if flow is None else flow >= 0.95 * iso.particles.sample_flow_l_min
    s["isolator.particles.action_excursion"] = _bool(v.get("particles.action_excursion"))
    t = _num(v.get("t"))
    for r in iso.rtps:
        for key in ("beta_docked", "beta_locked", "alpha_closed"):
            s[f"isolator.rtp.{r.id}.{key}"] = _bool(v.get(f"rtp.{r.id}.{key}"))
        alpha = v.get(f"rtp.{r.id}.alpha_door")
        door = f"{r.id.lower()}_alpha"
        s[f"door.{door}.open"] = None if alpha is None else alpha == "open"
        s[f"door.{door}.locked"] = None if alpha is None else alpha in ("open", "closed")
    for g in iso.glove_ports:
        last = v.get(f"glove.{g.id}.last_test")
        s[f"isolator.glove.{g.id}.last_test"] = last if isinstance(last, str) else None
        lt = _num(v.get(f"glove.{g.id}.last_test_time"))
        s[f"isolator.glove.{g.id}.test_age_h"] = (t - lt) / 3600.0 if (t is not None and lt is not None) else None
        s[f"isolator.glove.{g.id}.in_use"] = _bool(v.get(f"glove.{g.id}.in_use"))
        s[f"isolator.glove.{g.id}.visual_defect"] = bool(v.get(f"glove.{g.id}.visual_defect", False))
    for d, key in (("A", "hatch_a"), ("B", "hatch_b")):
        phase = v.get(f"hatch.door_{d}")
        s[f"door.{key}.open"] = None if phase is None else phase == "open"
        s[f"door.{key}.locked"] = None if phase is None else phase in ("open", "closed")
    return s


def vhp_signals(v: dict[str, Any], cfg: Any) -> dict[str, Any]:
    a, b = _num(v.get("h2o2_ppm")), _num(v.get("h2o2_ppm_b"))
    # redundant sensors: the worse (higher) of the two counts for release
    ppm = None if a is None and b is None else max(x for x in (a, b) if x is not None)
    return {
        "vhp.cycle_active": _bool(v.get("cycle_active")),
        "vhp.h2o2_ppm": ppm,
        "vhp.phase": v.get("phase") if isinstance(v.get("phase"), str) else None,
    }


def autoclave_signals(v: dict[str, Any], cfg: Any) -> dict[str, Any]:
    p = _num(v.get("chamber_p_kpa"))
    phase = v.get("phase")
    s = {
        "autoclave.cycle_active": _bool(v.get("cycle_running")),
        "autoclave.last_result": ("PASS" if phase == "COMPLETE" else "FAIL" if phase == "FAILED" else "NONE")
        if isinstance(phase, str) else None,
        "autoclave.sterile_load_available": _bool(v.get("unload_released")),
        "autoclave.door_load.closed": _bool(v.get("load_door_closed")),
        "autoclave.door_unload.closed": _bool(v.get("unload_door_closed")),
        "autoclave.gaskets_ok": (None if v.get("load_door_gasket_ok") is None or v.get("unload_door_gasket_ok") is None
                                 else bool(v.get("load_door_gasket_ok") and v.get("unload_door_gasket_ok"))),
        "autoclave.chamber_gauge_abs_kpa": None if p is None else abs(p - ATMOSPHERIC_KPA),
        "autoclave.chamber_t_c": _num(v.get("chamber_t_c")),
    }
    for side in ("load", "unload"):
        st = v.get(f"{side}_door_state")
        s[f"door.autoclave_{side}.open"] = None if st is None else st == "OPEN"
        s[f"door.autoclave_{side}.locked"] = None if st is None else st in ("OPEN", "SEALED")
    return s


def arm_signals(v: dict[str, Any], cfg: Any) -> dict[str, Any]:
    return {
        "arm.at_decon": _bool(v.get("at_decon")),
        "arm.at_park": _bool(v.get("at_park")),
        "arm.drives_enabled": _bool(v.get("drives_enabled")),
        "arm.moving": _bool(v.get("moving")),
        "arm.protective_stop": _bool(v.get("protective_stop")),
        "arm.speed_class": v.get("speed_class") if isinstance(v.get("speed_class"), str) else None,
        "arm.tcp_speed_m_s": _num(v.get("tcp_speed_m_s")),
    }


MAPPERS = {"isolator": isolator_signals, "vhp": vhp_signals, "autoclave": autoclave_signals, "arm": arm_signals}


def signals_from_readings(kind: str, values: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """Signal name → value (None = unknown) for one device's readings."""
    return MAPPERS[kind](values, cfg)
