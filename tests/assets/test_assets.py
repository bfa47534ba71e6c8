"""Robot and cell description: regeneration, kinematics against the DH table, real parsers."""

from __future__ import annotations

import importlib.util
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from aseptic_cell.assets import ASSET_FILES, default_assets_dir, generate
from aseptic_cell.assets.generate import stale_assets, write_assets
from aseptic_cell.assets.urdf import CONTROLLERS_PLACEHOLDER, HW_NAMESPACE, urdf_link_frames
from aseptic_cell.assets.validate import check_urdf, ign_sdf_check
from aseptic_cell.config import default_config_dir, load_config

ROOT = Path(__file__).resolve().parents[2]
ASSETS = default_assets_dir()
URDF = ASSETS / "aseptic_cell_arm.urdf"
WORLD = ASSETS / "isolator.sdf"


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


def _find(el: ET.Element, path: str) -> ET.Element:
    found = el.find(path)
    assert found is not None, path
    return found


def _text(el: ET.Element, path: str) -> str:
    return str(_find(el, path).text)


def _dh(arm, q):
    """Plain standard-DH chain, written here independently of the generator."""
    t = np.eye(4)
    t[:3, 3] = arm.base.xyz
    out = [t]
    for th, row in zip(q, arm.dh, strict=True):
        ct, st, ca, sa = math.cos(th), math.sin(th), math.cos(row.alpha), math.sin(row.alpha)
        t = t @ np.array([[ct, -st * ca, st * sa, row.a * ct], [st, ct * ca, -ct * sa, row.a * st],
                          [0, sa, ca, row.d], [0, 0, 0, 1.0]])
        out.append(t)
    return out


def test_committed_assets_match_a_regeneration(tmp_path):
    assert stale_assets(default_config_dir(), ASSETS) == []
    # and the check is able to fail: one changed digit is found
    write_assets(default_config_dir(), tmp_path)
    text = (tmp_path / "isolator.sdf").read_text()
    (tmp_path / "isolator.sdf").write_text(text.replace("0.925", "0.926", 1))
    assert stale_assets(default_config_dir(), tmp_path) == ["isolator.sdf"]


def test_urdf_kinematics_equal_the_dh_table(cfg):
    text = URDF.read_text()
    rng = np.random.default_rng(7)
    worst = 0.0
    for q in [np.zeros(6), np.array(cfg.arm.poses["park"])] + list(rng.uniform(-math.pi, math.pi, (50, 6))):
        frames = urdf_link_frames(text, q)
        dh = _dh(cfg.arm, q)
        for k in range(1, 7):
            worst = max(worst, float(np.max(np.abs(frames[f"dh_frame_{k}"] - dh[k]))))
    assert worst < 1e-12, worst


def test_numbers_are_written_with_full_precision(cfg):
    text = URDF.read_text()
    # every DH value of the config appears as its round-trip form: no digit lost
    for row in cfg.arm.dh:
        for v in (row.a, row.d):
            if v != 0.0:
                assert repr(float(v)) in text
    # irrational values (pi limits, pi/2 twists) keep all their digits (>= 12 significant)
    for lim in cfg.arm.joints:
        assert f'lower="{float(lim.min)!r}" upper="{float(lim.max)!r}"' in text
    assert "1.5707963267948966" in text and "3.141592653589793" in text


def test_urdf_structure(cfg):
    root = ET.parse(URDF).getroot()
    revolute = [j for j in root.findall("joint") if j.get("type") == "revolute"]
    assert [j.get("name") for j in revolute] == [j.name for j in cfg.arm.joints]
    for link in root.findall("link"):
        inertial = link.find("inertial")
        if inertial is not None:
            assert float(_find(inertial, "mass").get("value", "nan")) > 0
            i = _find(inertial, "inertia")
            m = np.array([[float(i.get(a, "nan")) for a in row] for row in
                          (("ixx", "ixy", "ixz"), ("ixy", "iyy", "iyz"), ("ixz", "iyz", "izz"))])
            ev = np.linalg.eigvalsh(m)
            assert ev.min() > 0 and ev[0] + ev[1] >= ev[2] * (1 - 1e-9)  # triangle inequality
    # capsules as cylinder + 2 spheres, none as <capsule>
    assert "<capsule" not in URDF.read_text()
    for c in cfg.arm.links:
        names = {e.get("name") for e in root.iter("collision")}
        assert {f"{c.name}_cyl", f"{c.name}_end0", f"{c.name}_end1"} <= names
    hw = root.find("ros2_control/hardware/plugin")
    assert hw is not None and hw.text == "gz_ros2_control/GazeboSimSystem"
    assert _text(root, "gazebo/plugin/parameters") == CONTROLLERS_PLACEHOLDER
    assert _text(root, "gazebo/plugin/ros/namespace") == HW_NAMESPACE


def test_world_has_walls_and_equipment_only(cfg):
    root = ET.parse(WORLD).getroot()
    assert root.get("version") == "1.9"
    models = root.findall("world/model")
    assert [m.get("name") for m in models] == ["isolator"]  # the arm is spawned, not included
    assert _text(models[0], "static") == "true"
    names = {str(c.get("name")).removesuffix("_collision") for c in models[0].iter("collision")}
    assert names == {b.name for b in cfg.geometry.boxes if b.kind in ("wall", "equipment")}
    assert not names & {b.name for b in cfg.geometry.boxes if b.kind == "keepout"}


def test_bridge_and_controllers_yaml(cfg):
    entries = yaml.safe_load((ASSETS / "ros_gz_bridge.yaml").read_text())
    assert isinstance(entries, list) and entries
    for e in entries:  # ros_gz_bridge bridge_config.cpp: required keys and directions
        assert ("topic_name" in e) != ("ros_topic_name" in e and "gz_topic_name" in e)
        assert e["ros_type_name"] and e["gz_type_name"]
        assert e.get("direction", "BIDIRECTIONAL") in ("BIDIRECTIONAL", "GZ_TO_ROS", "ROS_TO_GZ")
    clock = [e for e in entries if e.get("ros_topic_name") == "/clock"]
    assert clock and clock[0]["direction"] == "GZ_TO_ROS" and clock[0]["gz_type_name"] == "gz.msgs.Clock"
    ctl = yaml.safe_load((ASSETS / "controllers.yaml").read_text())
    cm = ctl["/**/controller_manager"]["ros__parameters"]
    jtc_type = "joint_trajectory_controller/JointTrajectoryController"
    assert cm["joint_trajectory_controller"]["type"] == jtc_type
    assert cm["joint_state_broadcaster"]["type"] == "joint_state_broadcaster/JointStateBroadcaster"
    jtc = ctl["/**/joint_trajectory_controller"]["ros__parameters"]
    assert jtc["joints"] == [j.name for j in cfg.arm.joints] and jtc["command_interfaces"] == ["position"]


def test_launch_file_substitutes_every_path():
    spec = importlib.util.spec_from_file_location("gazebo_launch", ROOT / "launch" / "gazebo.launch.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # launch/launch_ros are imported only inside generate_launch_description
    assert tuple(mod.ASSETS) == ASSET_FILES and mod.PLACEHOLDER == CONTROLLERS_PLACEHOLDER
    assert mod.NAMESPACE == HW_NAMESPACE
    desc = mod.robot_description(str(ASSETS))
    assert CONTROLLERS_PLACEHOLDER not in desc and "$(find" not in desc
    path = _text(ET.fromstring(desc), "gazebo/plugin/parameters")
    assert Path(path).is_absolute() and Path(path).is_file()


# ---------------------------------------------------------------- the real parsers

def test_check_urdf_accepts_the_generated_urdf():
    assert check_urdf(URDF) == []


def test_ign_sdf_accepts_the_world_and_the_urdf():
    assert ign_sdf_check(WORLD) == []
    assert ign_sdf_check(URDF) == []


def test_check_urdf_refuses_broken_copies(tmp_path):
    text = URDF.read_text()
    missing_parent = tmp_path / "missing_parent.urdf"
    missing_parent.write_text(text.replace('<parent link="dh_frame_2"/>', '<parent link="no_such_link"/>', 1))
    assert any("exit code" in p for p in check_urdf(missing_parent))
    # exits 0 but reports on stderr: the stderr rule is what catches it
    capsule = tmp_path / "capsule.urdf"
    capsule.write_text(re.sub(r'<cylinder radius="([^"]+)" length="([^"]+)"/>',
                              r'<capsule radius="\1" length="\2"/>', text, count=1))
    problems = check_urdf(capsule)
    assert problems and not any("exit code" in p for p in problems)
    assert any("capsule" in p for p in problems)


def test_ign_sdf_refuses_broken_copies(tmp_path):
    bad_world = tmp_path / "bad.sdf"
    bad_world.write_text(WORLD.read_text().replace("<static>true</static>", "<static>maybe</static>"))
    assert any("exit code" in p for p in ign_sdf_check(bad_world))
    bad_urdf = tmp_path / "bad.urdf"
    text = URDF.read_text()
    bad_urdf.write_text(text.replace('<parent link="dh_frame_2"/>', '<parent link="nowhere"/>', 1))
    assert any("exit code" in p for p in ign_sdf_check(bad_urdf))


def test_generate_covers_every_asset():
    assert tuple(generate(default_config_dir())) == ASSET_FILES


def test_launch_testing_files_share_the_checks():
    """launch/*.launch_test.py run on ROS machines (launch_test); here they must compile, use the
    shared checks that tests/ros/test_jtc_interface.py runs, and stay out of pytest's collection."""
    from aseptic_cell.physics import checks

    files = sorted((ROOT / "launch").glob("*.launch_test.py"))
    assert {f.name for f in files} == {"gazebo_bringup.launch_test.py", "mujoco_arm.launch_test.py"}
    for f in files:
        src = f.read_text()
        compile(src, str(f), "exec")
        assert "run_interface_checks" in src and "ReadyToTest()" in src and "post_shutdown_test" in src
        assert not f.name.startswith("test_")  # not a pytest module name (and launch/ is not a testpath)
    assert callable(checks.run_interface_checks)
