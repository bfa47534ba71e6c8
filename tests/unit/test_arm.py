"""Behaviour of the simulated robot arm (sim/arm.py).

Expected figures are hand calculations from config/arm.yaml, not calls into the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from aseptic_cell.sim.arm import ArmModel, OperationalMode
from aseptic_cell.sim.clock import SimClock
from aseptic_cell.sim.common import CommandRefused, InvalidCommand

from aseptic_cell.config.robot import ArmConfig

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def cfg() -> ArmConfig:
    return ArmConfig.model_validate(yaml.safe_load((CONFIG / "arm.yaml").read_text()))


class Rig:
    def __init__(self, cfg, checker=None, drives=True) -> None:
        self.clock = SimClock()
        self.arm = ArmModel(cfg, self.clock, checker=checker)
        if drives:
            self.arm.enable_drives()

    def run(self, seconds: float, dt: float = 0.1) -> None:
        for _ in range(round(seconds / dt)):
            self.clock.advance(dt)
            self.arm.step(dt)

    def run_until_stopped(self, limit_s: float = 30.0, dt: float = 0.1) -> float:
        t0 = self.clock.now()
        while self.arm.moving:
            assert self.clock.now() - t0 < limit_s
            self.run(dt, dt)
        return self.clock.now() - t0


def cosine_move(start: np.ndarray, joint: int, delta: float, duration: float, dt: float) -> np.ndarray:
    """Hand-made trajectory: one joint moves by delta with a (1 - cos) profile."""
    t = np.arange(0.0, duration + 1e-12, dt)
    s = 0.5 * (1.0 - np.cos(np.pi * t / duration))
    q = np.tile(start, (len(t), 1)).astype(np.float64)
    q[:, joint] += delta * s
    return q


def refused(code, fn, *args, **kw):
    with pytest.raises(CommandRefused) as ei:
        fn(*args, **kw)
    assert ei.value.code == code, ei.value
    return ei.value


# --------------------------------------------------------------------------- kinematics
def test_fk_matches_hand_calculation(cfg):
    d1, d4, d5, d6 = (cfg.dh[i].d for i in (0, 3, 4, 5))
    a2, a3 = cfg.dh[1].a, cfg.dh[2].a
    arm = ArmModel(cfg, SimClock(), q0=np.zeros(6))
    # q = 0 (standard DH, alphas +90/0/0/+90/-90/0): frame 1 maps z1 -> -y0, so
    # x = a2 + a3, y = -(d4 + d6), z = d1 - d5  ->  (-0.8172, -0.2329, 0.0628) m
    expected = np.array([a2 + a3, -(d4 + d6), d1 - d5])
    assert expected == pytest.approx([-0.8172, -0.2329, 0.0628], abs=1e-9)
    assert arm.tcp_position() == pytest.approx(expected, abs=1e-9)
    # q2 = -pi/2: rotate the q=0 arm about the shoulder axis z1 = -y0 by -90 deg, i.e. +90 deg
    # about y0 through (0, 0, d1): (x, y, z - d1) -> (z - d1, y, -x) -> arm points straight up
    arm = ArmModel(cfg, SimClock(), q0=np.array([0.0, -math.pi / 2, 0.0, 0.0, 0.0, 0.0]))
    assert arm.tcp_position() == pytest.approx([-d5, -(d4 + d6), d1 - (a2 + a3)], abs=1e-9)
    assert arm.tcp_position() == pytest.approx([-0.0997, -0.2329, 0.9797], abs=1e-9)
    # q1 = +pi/2 rotates the q = 0 point about z0: (x, y) -> (-y, x)
    arm = ArmModel(cfg, SimClock(), q0=np.array([math.pi / 2, 0.0, 0.0, 0.0, 0.0, 0.0]))
    assert arm.tcp_position() == pytest.approx([d4 + d6, a2 + a3, d1 - d5], abs=1e-9)


def test_sensors_report_state(cfg):
    r = Rig(cfg, drives=False)
    s = r.arm.sensors()
    for j in cfg.joints:
        assert s[f"joint.{j.name}.position_rad"] == pytest.approx(cfg.poses["park"][cfg.joints.index(j)])
        assert s[f"joint.{j.name}.velocity_rad_s"] == 0.0
    for key in ("tcp_x_m", "tcp_y_m", "tcp_z_m", "tcp_speed_m_s", "speed_class", "moving", "drives_enabled",
                "protective_stop", "mode", "at_park", "at_decon"):
        assert key in s
    assert s["at_park"] and not s["at_decon"] and not s["drives_enabled"]
    assert s["mode"] == "AUTOMATIC"


# --------------------------------------------------------------------------- following
def test_trajectory_within_limits_is_followed_to_the_goal(cfg):
    r = Rig(cfg)
    start = r.arm.joint_positions()
    q = cosine_move(start, joint=0, delta=0.6, duration=3.0, dt=0.02)
    # hand check of the profile: peak velocity pi*0.6/(2*3) = 0.31 rad/s, accel 0.33 rad/s^2
    r.arm.execute_trajectory(q, 0.02)
    assert r.arm.moving
    max_err = 0.0
    for _ in range(30):
        r.run(0.1)
        t = r.clock.now()
        if t <= 3.0:
            cmd0 = start[0] + 0.6 * 0.5 * (1 - math.cos(math.pi * t / 3.0))
            max_err = max(max_err, abs(r.arm.joint_positions()[0] - cmd0))
    # first-order tracking lag: error <= v_max * tau = 0.31 * 0.05 = 0.016 rad
    assert max_err <= math.pi * 0.6 / 6.0 * cfg.tracking_time_constant_s + 1e-3
    r.run_until_stopped()
    assert r.arm.joint_positions() == pytest.approx(q[-1], abs=cfg.pose_tolerance_rad)
    assert not r.arm.moving and not r.arm.sensors()["moving"]
    r.run(1.0)
    assert r.arm.joint_positions() == pytest.approx(q[-1], abs=1e-6)
    assert r.arm.sensors()["tcp_speed_m_s"] == pytest.approx(0.0, abs=1e-6)


def test_move_to_pose_plans_within_limits(cfg):
    r = Rig(cfg)
    r.arm.move_to_pose(pose="decon")  # keyword as the device command catalogue passes it
    # shortest quintic for park -> decon: elbow moves 1.5708 rad at 4 rad/s^2 max:
    # T >= sqrt(5.7735 * 1.5708 / 4) = 1.506 s (velocity bound 1.875*1.5708/pi = 0.94 s)
    assert r.arm.status()["trajectory_duration_s"] >= math.sqrt(10 / math.sqrt(3) * 1.5708 / 4.0) - 1e-3
    peak_speed = 0.0
    while r.arm.moving:
        r.run(0.02, 0.02)
        peak_speed = max(peak_speed, r.arm.sensors()["tcp_speed_m_s"])
    assert r.arm.at_pose("decon") and r.arm.sensors()["at_decon"]
    assert peak_speed <= cfg.speed_classes["transit"].max_tcp_speed_m_s * 1.02
    with pytest.raises(InvalidCommand):
        r.arm.move_to_pose("nowhere")


# --------------------------------------------------------------------------- refusals
def _unchanged(r: Rig, before: np.ndarray) -> None:
    r.run(1.0)
    assert not r.arm.moving
    assert r.arm.joint_positions() == pytest.approx(before, abs=1e-12)


def test_velocity_limit_refused_with_joint_named(cfg):
    r = Rig(cfg)
    before = r.arm.joint_positions()
    # wrist_3 moves 1 rad in 0.25 s (cosine): peak 6.28 rad/s > pi rad/s
    q = cosine_move(before, joint=5, delta=1.0, duration=0.25, dt=0.01)
    e = refused("JOINT_VELOCITY_LIMIT", r.arm.execute_trajectory, q, 0.01)
    assert "wrist_3_joint" in e.reason
    _unchanged(r, before)


def test_acceleration_limit_refused_with_joint_named(cfg):
    r = Rig(cfg)
    before = r.arm.joint_positions()
    # shoulder_lift 0.3 rad in 0.5 s: peak vel 0.3*pi/(2*0.5) = 0.94 rad/s (ok), peak accel
    # 0.3/2 * (pi/0.5)^2 = 5.9 rad/s^2 > 4 rad/s^2
    q = cosine_move(before, joint=1, delta=0.3, duration=0.5, dt=0.01)
    e = refused("JOINT_ACCELERATION_LIMIT", r.arm.execute_trajectory, q, 0.01)
    assert "shoulder_lift_joint" in e.reason
    _unchanged(r, before)


def test_position_limit_refused_with_joint_named(cfg):
    r = Rig(cfg)
    before = r.arm.joint_positions()
    # elbow from park (1.5708) to 3.3 rad > pi, slowly
    q = cosine_move(before, joint=2, delta=3.3 - before[2], duration=20.0, dt=0.05)
    e = refused("JOINT_POSITION_LIMIT", r.arm.execute_trajectory, q, 0.05)
    assert "elbow_joint" in e.reason and "3.1416" in e.reason
    _unchanged(r, before)


def test_nan_or_bad_array_is_invalid_and_nothing_moves(cfg):
    r = Rig(cfg)
    before = r.arm.joint_positions()
    q = cosine_move(before, joint=0, delta=0.2, duration=2.0, dt=0.02)
    bad = q.copy()
    bad[10, 3] = np.nan
    with pytest.raises(InvalidCommand, match="wrist_1_joint"):
        r.arm.execute_trajectory(bad, 0.02)
    with pytest.raises(InvalidCommand):
        r.arm.execute_trajectory(q.astype(np.float32), 0.02)
    with pytest.raises(InvalidCommand):
        r.arm.execute_trajectory(q[:, :5].copy(), 0.02)
    with pytest.raises(InvalidCommand):
        r.arm.execute_trajectory(q.tolist(), 0.02)
    with pytest.raises(InvalidCommand):
        r.arm.execute_trajectory(q, math.nan)
    with pytest.raises(InvalidCommand):
        r.arm.execute_trajectory(q, 0.02, speed_class="ludicrous")
    _unchanged(r, before)


def test_first_sample_far_from_current_position_refused(cfg):
    r = Rig(cfg)
    before = r.arm.joint_positions()
    q = cosine_move(before, joint=0, delta=0.2, duration=2.0, dt=0.02)
    q[:, 1] += 0.05  # 0.05 rad jump on shoulder_lift at the first sample
    e = refused("TRAJECTORY_START_MISMATCH", r.arm.execute_trajectory, q, 0.02)
    assert "shoulder_lift_joint" in e.reason
    _unchanged(r, before)


def test_tcp_speed_class_and_reduced_mode(cfg):
    r = Rig(cfg)
    before = r.arm.joint_positions()
    # shoulder_pan 1.0 rad in 2 s: peak 1.0*pi/4 = 0.785 rad/s; the TCP at park is 0.51 m from
    # the pan axis -> ~0.40 m/s: above near_product 0.25 m/s, below transit 0.8 m/s
    q = cosine_move(before, joint=0, delta=1.0, duration=2.0, dt=0.02)
    refused("TCP_SPEED_LIMIT", r.arm.execute_trajectory, q, 0.02, speed_class="near_product")
    r.arm.set_mode(OperationalMode.MANUAL_REDUCED_SPEED)  # ISO 10218-1 250 mm/s
    refused("TCP_SPEED_LIMIT", r.arm.execute_trajectory, q, 0.02, speed_class="transit")
    r.arm.set_mode("AUTOMATIC")
    r.arm.execute_trajectory(q, 0.02, speed_class="transit")
    assert r.arm.sensors()["speed_class"] == "transit"
    refused("ARM_MOVING", r.arm.set_mode, "MANUAL_HIGH_SPEED")
    with pytest.raises(InvalidCommand):
        r.arm.set_mode("TURBO")


def test_checker_must_pass_before_any_motion(cfg):
    @dataclass
    class Result:
        ok: bool
        first_failing_index: int | None
        reason: str

    calls = []

    def checker(q, dt, speed_class):
        calls.append((q.shape, dt, speed_class))
        if len(calls) == 1:
            return Result(False, 42, "forearm hits glove_gp2_reach")
        return Result(True, None, "")

    r = Rig(cfg, checker=checker)
    before = r.arm.joint_positions()
    q = cosine_move(before, joint=0, delta=0.2, duration=2.0, dt=0.02)
    e = refused("COLLISION_CHECK_FAILED", r.arm.execute_trajectory, q, 0.02, "near_product")
    assert "42" in e.reason and "glove_gp2_reach" in e.reason
    assert calls == [(q.shape, 0.02, "near_product")]
    _unchanged(r, before)
    r.arm.execute_trajectory(q, 0.02, "near_product")
    assert r.arm.moving


# --------------------------------------------------------------------------- stops
def test_protective_stop_halts_latches_and_reset_does_not_jump(cfg):
    r = Rig(cfg)
    start = r.arm.joint_positions()
    q = cosine_move(start, joint=0, delta=1.0, duration=4.0, dt=0.02)
    r.arm.execute_trajectory(q, 0.02)
    r.run(2.0)
    assert abs(r.arm.joint_velocities()[0]) > 0.1
    r.arm.protective_stop("light curtain")
    stopped = r.arm.joint_positions()
    assert r.arm.joint_velocities() == pytest.approx(np.zeros(6))
    s = r.arm.sensors()
    assert s["protective_stop"] and s["protective_stop_reason"] == "light curtain" and not s["moving"]
    r.run(3.0)
    assert r.arm.joint_positions() == pytest.approx(stopped, abs=1e-12)  # latched, no auto-resume
    refused("PROTECTIVE_STOP", r.arm.execute_trajectory, q, 0.02)
    r.arm.reset_protective_stop()
    r.run(3.0)
    # command re-seeded from the measured position: nothing jumps, the old goal is not resumed
    assert r.arm.joint_positions() == pytest.approx(stopped, abs=1e-12)
    assert not r.arm.moving
    r.arm.move_to_pose("park")
    r.run_until_stopped()
    assert r.arm.at_pose("park")


def test_arm_fault_triggers_protective_stop(cfg):
    r = Rig(cfg)
    q = cosine_move(r.arm.joint_positions(), joint=0, delta=0.5, duration=3.0, dt=0.02)
    r.arm.execute_trajectory(q, 0.02)
    r.run(1.0)
    r.arm.faults.inject("arm_fault", reason="joint 3 overcurrent")
    r.run(0.1)
    assert r.arm.sensors()["protective_stop"] and not r.arm.moving
    assert r.arm.joint_velocities() == pytest.approx(np.zeros(6))
    refused("ARM_FAULT_ACTIVE", r.arm.reset_protective_stop)
    r.arm.faults.clear("arm_fault")
    r.arm.reset_protective_stop()
    assert not r.arm.sensors()["protective_stop"]


def test_sto_refuses_motion_and_halts(cfg):
    r = Rig(cfg, drives=False)
    q = cosine_move(r.arm.joint_positions(), joint=0, delta=0.5, duration=3.0, dt=0.02)
    refused("DRIVES_OFF", r.arm.execute_trajectory, q, 0.02)
    refused("DRIVES_OFF", r.arm.move_to_pose, "decon")
    r.arm.enable_drives()
    r.arm.execute_trajectory(q, 0.02)
    r.run(1.0)
    r.arm.disable_drives()
    held = r.arm.joint_positions()
    assert not r.arm.moving and r.arm.joint_velocities() == pytest.approx(np.zeros(6))
    r.run(2.0)
    assert r.arm.joint_positions() == pytest.approx(held, abs=1e-12)


def test_safe_for_vhp_only_at_decon_pose_with_drives_off(cfg):
    r = Rig(cfg, drives=False)
    ok, reason = r.arm.safe_for_vhp()
    assert not ok and "decon pose" in reason
    r.arm.enable_drives()
    r.arm.move_to_pose("decon")
    r.run(0.5)
    ok, reason = r.arm.safe_for_vhp()
    assert not ok and "moving" in reason
    r.run_until_stopped()
    ok, reason = r.arm.safe_for_vhp()
    assert not ok and "drives enabled" in reason
    r.arm.disable_drives()
    assert r.arm.safe_for_vhp() == (True, "")
    assert r.arm.sensors()["at_decon"] and not r.arm.sensors()["drives_enabled"]


# --------------------------------------------------------------------------- faults and determinism
def test_encoder_stuck_and_sensor_faults(cfg):
    r = Rig(cfg)
    r.arm.faults.inject("encoder_stuck")
    r.run(0.1)
    reported = r.arm.sensors()["joint.shoulder_pan_joint.position_rad"]
    q = cosine_move(r.arm.joint_positions(), joint=0, delta=0.5, duration=2.0, dt=0.02)
    r.arm.execute_trajectory(q, 0.02)
    r.run(3.0)
    assert r.arm.sensors()["joint.shoulder_pan_joint.position_rad"] == reported
    assert r.arm.truth()["q"][0] - reported == pytest.approx(0.5, abs=0.01)
    r.arm.faults.clear("encoder_stuck")
    r.arm.faults.inject("sensor:tcp_z_m", mode="nan")
    r.run(0.1)
    assert math.isnan(r.arm.sensors()["tcp_z_m"])
    with pytest.raises(InvalidCommand):
        r.arm.faults.inject("gremlin")


def _follow(cfg, dt):
    r = Rig(cfg)
    q = cosine_move(r.arm.joint_positions(), joint=1, delta=-0.4, duration=2.5, dt=0.03)
    r.arm.execute_trajectory(q, 0.03)
    out = []
    for _ in range(8):
        r.run(0.5, dt)
        out.append(r.arm.joint_positions()[1])
    return out


def test_following_does_not_depend_on_dt(cfg):
    ref = _follow(cfg, 0.01)
    for dt in (0.05, 0.1, 0.25, 0.5):
        assert _follow(cfg, dt) == pytest.approx(ref, abs=1e-9)
