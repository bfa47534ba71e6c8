"""Typed configuration: the shipped config is valid; malformed configs are rejected precisely."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aseptic_cell.config import ConfigError, load_config, schemas

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"


@pytest.fixture()
def cfg_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target


def _edit(directory: Path, name: str, fn) -> None:
    path = directory / name
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _issues(directory: Path) -> list:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return info.value.issues


def _one(issues, file: str, path_part: str, reason_part: str):
    hits = [i for i in issues if i.file == file and path_part in i.path and reason_part in i.reason]
    assert hits, f"no issue in {file} at *{path_part}* with *{reason_part}*; got: {[str(i) for i in issues]}"
    return hits[0]


def test_shipped_config_is_valid():
    cfg = load_config(CONFIG)
    assert cfg.layout.cell.id == "ATMPCell01"
    assert {r.id for r in cfg.interlocks.rules} >= {f"IL-{i:02d}" for i in range(1, 13)}  # IL-13: auth layer (issue 13)
    assert "CART-TRANSDUCTION" in cfg.recipes
    assert cfg.autoclave_programs.get("P121-15").plateau.hold_s == 900.0
    assert cfg.vhp_cycles.get("VHP-ISO-STD").aerate.release_ppm <= 1.0


def test_nan_setpoint_rejected(cfg_dir):
    _edit(cfg_dir, "cell.yaml", lambda d: d["isolator"]["pressure"].__setitem__("setpoint_pa", float("nan")))
    issue = _one(_issues(cfg_dir), "cell.yaml", "isolator.pressure.setpoint_pa", "finite")
    assert issue.line is not None


def test_inf_in_vhp_recipe_rejected(cfg_dir):
    _edit(cfg_dir, "vhp_cycles.yaml",
          lambda d: d["cycles"][0]["decontaminate"].__setitem__("setpoint_ppm", float("inf")))
    _one(_issues(cfg_dir), "vhp_cycles.yaml", "cycles[0].decontaminate.setpoint_ppm", "finite")


def test_nan_joint_limit_rejected(cfg_dir):
    _edit(cfg_dir, "arm.yaml", lambda d: d["joints"][2].__setitem__("max_velocity", float("nan")))
    _one(_issues(cfg_dir), "arm.yaml", "joints[2].max_velocity", "finite")


def test_malformed_yaml_names_line(cfg_dir):
    (cfg_dir / "autoclave_programs.yaml").write_text("programs:\n  - id: P1\n    kind: [sterilise\n")
    issue = _one(_issues(cfg_dir), "autoclave_programs.yaml", "", "malformed YAML")
    assert issue.line is not None and issue.line >= 3


def test_duplicate_yaml_key_rejected(cfg_dir):
    text = (cfg_dir / "cell.yaml").read_text().replace("  volume_m3: 2.0", "  volume_m3: 2.0\n  volume_m3: 3.0", 1)
    (cfg_dir / "cell.yaml").write_text(text)
    _one(_issues(cfg_dir), "cell.yaml", "", "duplicate key 'volume_m3'")


def test_unknown_key_rejected(cfg_dir):
    _edit(cfg_dir, "cell.yaml", lambda d: d["isolator"]["hatch"].__setitem__("dwel_s", 10))
    _one(_issues(cfg_dir), "cell.yaml", "isolator.hatch.dwel_s", "Extra inputs are not permitted")


def test_missing_field_rejected(cfg_dir):
    _edit(cfg_dir, "cell.yaml", lambda d: d["autoclave"].pop("door_open_max_temp_c"))
    _one(_issues(cfg_dir), "cell.yaml", "autoclave.door_open_max_temp_c", "Field required")


def test_hatch_dwell_out_of_range(cfg_dir):
    _edit(cfg_dir, "cell.yaml", lambda d: d["isolator"]["hatch"].__setitem__("dwell_s", 0.5))
    _one(_issues(cfg_dir), "cell.yaml", "isolator.hatch.dwell_s", "greater than or equal to 2")


def test_pressure_band_inverted(cfg_dir):
    _edit(cfg_dir, "cell.yaml", lambda d: d["isolator"]["pressure"].__setitem__("alarm_low_pa", 70.0))
    _one(_issues(cfg_dir), "cell.yaml", "isolator.pressure", "alarm_low_pa < setpoint_pa")


def test_release_limit_above_pel_rejected(cfg_dir):
    _edit(cfg_dir, "vhp_cycles.yaml", lambda d: d["cycles"][0]["aerate"].__setitem__("release_ppm", 5.0))
    _one(_issues(cfg_dir), "vhp_cycles.yaml", "cycles[0].aerate.release_ppm", "less than or equal to 1")


def test_autoclave_program_without_plateau(cfg_dir):
    _edit(cfg_dir, "autoclave_programs.yaml", lambda d: d["programs"][0].pop("plateau"))
    _one(_issues(cfg_dir), "autoclave_programs.yaml", "programs[0]", "needs: plateau")


def test_pose_outside_joint_limits(cfg_dir):
    _edit(cfg_dir, "arm.yaml", lambda d: d["poses"].__setitem__("park", [0, 0, 4.0, 0, 0, 0]))
    _one(_issues(cfg_dir), "arm.yaml", "", "pose 'park' joint 2 (elbow_joint) = 4.0 is outside")


def test_missing_required_interlock(cfg_dir):
    _edit(cfg_dir, "interlocks.yaml", lambda d: d.__setitem__("rules", [r for r in d["rules"] if r["id"] != "IL-08"]))
    _one(_issues(cfg_dir), "interlocks.yaml", "rules", "required interlock IL-08")


def test_interlock_unknown_param_and_operator(cfg_dir):
    def broken(d):
        d["rules"][0]["when"]["all"][2]["param"] = "no_such_param"
        d["rules"][1]["when"]["all"][0]["op"] = "approx"
    _edit(cfg_dir, "interlocks.yaml", broken)
    issues = _issues(cfg_dir)
    _one(issues, "interlocks.yaml", "rules[1].when.all[0].op", "")


def test_interlock_unknown_param(cfg_dir):
    _edit(cfg_dir, "interlocks.yaml", lambda d: d["rules"][0]["when"]["all"][2].__setitem__("param", "nope"))
    _one(_issues(cfg_dir), "interlocks.yaml", "", "param 'nope' is not defined")


def test_recipe_unknown_device_cycle_and_pose(cfg_dir):
    def broken(d):
        d["procedure"]["unit_procedures"][0]["unit"] = "ISO9"
        d["procedure"]["unit_procedures"][0]["operations"][1]["phases"][1]["params"]["cycle"] = "NOPE"
        d["procedure"]["unit_procedures"][2]["operations"][1]["phases"][0]["params"]["waypoints"] = ["park", "moon"]
    _edit(cfg_dir, "recipes/cart_transduction.yaml", broken)
    issues = _issues(cfg_dir)
    f = "recipes/cart_transduction.yaml"
    _one(issues, f, "procedure.unit_procedures[0].unit", "unknown device 'ISO9'")
    _one(issues, f, "unit_procedures[0].operations[1].phases[1].params.cycle", "unknown VHP cycle recipe 'NOPE'")
    _one(issues, f, "phases[0].params.waypoints", "unknown pose 'moon'")


def test_recipe_unknown_phase_type(cfg_dir):
    _edit(cfg_dir, "recipes/cart_transduction.yaml",
          lambda d: d["procedure"]["unit_procedures"][0]["operations"][0]["phases"][0].__setitem__("type", "teleport"))
    _one(_issues(cfg_dir), "recipes/cart_transduction.yaml", "phases[0]", "unknown phase type 'teleport'")


def test_recipe_transfer_needs_sterilise_program(cfg_dir):
    _edit(cfg_dir, "recipes/cart_transduction.yaml",
          lambda d: d["procedure"]["unit_procedures"][1]["operations"][0]["phases"][0]["params"]
          .__setitem__("program", "LEAK-TEST"))
    _one(_issues(cfg_dir), "recipes/cart_transduction.yaml", "params.program", "needs a sterilise program")


def test_geometry_refers_to_unknown_glove_port(cfg_dir):
    _edit(cfg_dir, "geometry.yaml", lambda d: d["boxes"][21].__setitem__("active", "glove_in_use:GP9"))
    _one(_issues(cfg_dir), "geometry.yaml", "boxes[21].active", "unknown glove in use target 'GP9'")


def test_missing_file(cfg_dir):
    (cfg_dir / "interlocks.yaml").unlink()
    _one(_issues(cfg_dir), "interlocks.yaml", "", "file is missing")


def test_all_problems_reported_together(cfg_dir):
    _edit(cfg_dir, "cell.yaml", lambda d: d["isolator"].__setitem__("volume_m3", -1))
    _edit(cfg_dir, "arm.yaml", lambda d: d.__setitem__("safety_margin_m", float("nan")))
    files = {i.file for i in _issues(cfg_dir)}
    assert {"cell.yaml", "arm.yaml"} <= files


def test_schema_covers_every_file():
    s = schemas()
    assert set(s) >= {"cell.yaml", "arm.yaml", "geometry.yaml", "vhp_cycles.yaml",
                      "autoclave_programs.yaml", "interlocks.yaml", "recipes/*.yaml"}
    assert "isolator" in s["cell.yaml"]["properties"]


def _cellctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aseptic_cell.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_cellctl_check_config_ok_and_broken(cfg_dir):
    ok = _cellctl("check-config", str(CONFIG))
    assert ok.returncode == 0, ok.stderr
    assert "is valid" in ok.stdout
    _edit(cfg_dir, "cell.yaml", lambda d: d["isolator"]["pressure"].__setitem__("setpoint_pa", "high"))
    bad = _cellctl("check-config", str(cfg_dir))
    assert bad.returncode == 2
    assert "cell.yaml" in bad.stderr and "isolator.pressure.setpoint_pa" in bad.stderr


def test_cellctl_schema_writes_files(tmp_path):
    res = _cellctl("schema", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "cell.schema.json").read_text())
    assert data["title"] == "CellLayout"
    assert (tmp_path / "recipes.schema.json").is_file()
