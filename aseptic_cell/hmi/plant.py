"""Static facts the displays need (limits, ids, recipe phase lists) from the cell configuration.

Read once at start-up; the displays show live values against these ranges (ISA-101 analog
indicators with normal ranges). A configuration problem leaves the list empty, never stops the
HMI (observation never becomes control).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("aseptic_cell.hmi.plant")


def plant_info(config_dir: str | Path) -> dict[str, Any]:
    try:
        from aseptic_cell.config import load_config

        cfg = load_config(config_dir)
    except Exception as exc:  # noqa: BLE001
        log.error("cannot load the cell configuration for the displays: %s", exc)
        return {"error": str(exc)}
    iso = cfg.layout.isolator
    p, part, air = iso.pressure, iso.particles, iso.airflow
    out: dict[str, Any] = {
        "cell": {"id": cfg.layout.cell.id, "name": cfg.layout.cell.name},
        "isolator": {
            "id": iso.id,
            "dp": {"low": p.alarm_low_pa, "high": p.alarm_high_pa, "setpoint": p.setpoint_pa},
            "particles_0_5": {"alert": part.alert_0_5_per_m3, "action": part.action_0_5_per_m3},
            "particles_5_0": {"alert": part.alert_5_0_per_m3, "action": part.action_5_0_per_m3},
            "airflow": {"low": air.min_m_s, "high": air.max_m_s},
            "glove_ports": [g.id for g in iso.glove_ports],
            "rtps": [r.id for r in iso.rtps],
        },
        "vhp_cycles": {
            c.id: {
                "version": c.version,
                "description": c.description,
                "dwell_s": c.decontaminate.dwell_s,
                "target_ppm": c.condition.target_ppm,
                "min_ppm": c.decontaminate.min_ppm,
                "max_rs_pct": c.decontaminate.max_rs_pct,
                "release_ppm": c.aerate.release_ppm,
                "timeouts": {
                    "PRECHECK": c.precheck.timeout_s,
                    "DEHUMIDIFY": c.dehumidify.timeout_s,
                    "CONDITION": c.condition.timeout_s,
                    "AERATE": c.aerate.timeout_s,
                },
            }
            for c in cfg.vhp_cycles.cycles
        },
        "autoclave_programs": {},
        "recipes": {},
        "arm_poses": sorted(cfg.arm.poses),
    }
    for prog in cfg.autoclave_programs.programs:
        d: dict[str, Any] = {
            "kind": prog.kind,
            "description": prog.description,
            "f0_target_min": getattr(prog, "f0_target_min", None),
        }
        plateau = getattr(prog, "plateau", None)
        if plateau is not None:
            d.update(setpoint_c=plateau.setpoint_c, band_c=plateau.band_c, hold_s=plateau.hold_s)
        out["autoclave_programs"][prog.id] = d
    for rid, recipe in cfg.recipes.items():
        out["recipes"][rid] = {
            "version": recipe.version,
            "description": recipe.description,
            "product": recipe.product,
            "phases": [
                {"unit_procedure": up.id, "operation": op.id, "phase": ph.id, "type": ph.type}
                for up, op, ph in recipe.phases()
            ],
        }
    pe = cfg.layout.process_equipment  # process equipment tiles (issue 14 item 1)
    inc = pe.incubator
    out["process_equipment"] = {
        "enabled": pe.enabled,
        "ids": {k: pe.unit(k).id for k in ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")},
        "incubator": {"slots": inc.slots, "temp": {"low": inc.temp_alarm_low_c, "high": inc.temp_alarm_high_c},
                      "co2": {"low": inc.co2_alarm_low_pct, "high": inc.co2_alarm_high_pct},
                      "rh": {"low": inc.rh_alarm_low_pct, "high": 100.0}},
        "centrifuge_programs": [p.id for p in pe.centrifuge.programs],
        "stations": list(pe.scanner.stations),
    }
    # alarms.yaml rationalisation: which alarms may be shelved, and for how long at most
    out["alarms_shelvable"] = sorted(a.id for a in cfg.alarms.alarms if a.shelvable)
    out["max_shelve_s"] = cfg.alarms.settings.max_shelve_s
    # ... and each alarm's rationalisation, shown in the alarm list (ISA-18.2: the operator sees the
    # consequence of not acting and the response expected [ISA18.2])
    out["alarms"] = {a.id: {"description": a.description, "priority": a.priority, "consequence": a.consequence,
                            "response": a.response} for a in cfg.alarms.alarms}
    return out
