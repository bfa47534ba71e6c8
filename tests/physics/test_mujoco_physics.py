"""The arm in MuJoCo against the project's own C motion check (aseptic_cell.motion.Scene):
same kinematics, same collision verdicts on random poses, same first contact pair on paths driven
into obstacles by the position servos; the joint_trajectory_controller semantics of the node."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.motion import Scene
from aseptic_cell.physics.jtc import TrajectoryRejected, from_message
from aseptic_cell.physics.mujoco_arm import ArmPhysics


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


@pytest.fixture(scope="module")
def scene(cfg):
    """The C check on the same obstacles MuJoCo has as bodies (walls and equipment)."""
    physical = [b for b in cfg.geometry.boxes if b.kind in ("wall", "equipment")]
    return Scene.from_config(cfg.arm, cfg.geometry.model_copy(update={"boxes": physical}))


@pytest.fixture
def physics(cfg):
    return ArmPhysics(cfg.arm, cfg.geometry)


def test_model_from_the_generated_urdf(physics, scene, cfg):
    m = physics.model
    assert m.nu == 6 and m.njnt == 6 and m.npair > 0
    assert [m.actuator(i).name for i in range(m.nu)] == [f"servo:{j.name}" for j in cfg.arm.joints]
    rng = np.random.default_rng(11)
    worst = 0.0
    for q in rng.uniform(-math.pi, math.pi, (50, 6)):
        physics.set_q(q)
        frames = scene.fk(q).frames
        link6 = physics.data.xpos[m.body("link_6").id]  # body of joint 6 = DH frame 5's origin
        worst = max(worst, float(np.max(np.abs(link6 - frames[5][:3, 3]))))
    assert worst < 1e-10


def test_collision_verdicts_agree_on_random_poses(physics, scene):
    rng = np.random.default_rng(2026)
    q = rng.uniform(-math.pi, math.pi, (400, 6))
    c = scene.clearance(q)
    verdict_agree = free = pair_agree = 0
    worst_distance = 0.0
    for i in range(len(q)):
        physics.set_q(q[i])
        mj_contact = bool(physics.contacts())
        c_contact = bool(c.distance[i] <= 0.0)
        verdict_agree += mj_contact == c_contact
        if not c_contact:
            free += 1
            closest = physics.closest(1.0)
            worst_distance = max(worst_distance, abs(closest.distance - float(c.distance[i])))
            pair_agree += (closest.link, closest.other) == (str(c.link[i]), str(c.other[i]))
    print(f"verdicts {verdict_agree}/400, free {free}, closest pair {pair_agree}/{free}, "
          f"max distance difference {worst_distance:.2e} m")
    assert verdict_agree == 400
    assert 30 <= free <= 370  # both kinds of pose are exercised
    assert pair_agree == free and worst_distance < 1e-8


def test_first_contact_on_paths_driven_into_obstacles(cfg, scene, physics):
    rng = np.random.default_rng(7)
    lim = np.array([[j.min, j.max] for j in cfg.arm.joints])
    lim[:, 0], lim[:, 1] = np.maximum(lim[:, 0], -math.pi), np.minimum(lim[:, 1], math.pi)
    cases, same_pair = 0, 0
    onset_clearance = []
    while cases < 12:
        q0, q1 = rng.uniform(lim[:, 0], lim[:, 1], (2, 6))
        d = scene.clearance(np.vstack([q0, q1])).distance
        if d[0] < 0.05 or d[1] > -0.02:
            continue
        path = q0 + np.linspace(0.0, 1.0, 4001)[:, None] * (q1 - q0)
        cl = scene.clearance(path)
        k = int(np.argmax(cl.distance <= 0.0))
        c_pair = (str(cl.link[k]), str(cl.other[k]))
        # drive the servos along the same path in 2 s and stop at MuJoCo's first contact
        physics.set_q(q0)
        steps = int(2.0 / physics.model.opt.timestep)
        mj_pair = None
        for n in range(1, steps + 1):
            s = n / steps
            physics.command(q0 + s * (q1 - q0), (q1 - q0) / 2.0)
            physics.step(1)
            contacts = physics.contacts()
            if contacts:
                mj_pair = (contacts[0].link, contacts[0].other)
                onset_clearance.append(float(scene.clearance(physics.q()[None, :]).distance[0]))
                break
        assert mj_pair is not None, f"MuJoCo never touched on a path the C check says collides ({c_pair})"
        cases += 1
        same_pair += mj_pair == c_pair
    print(f"first contact at the same pair on {same_pair}/12 paths; C clearance at MuJoCo's onset: "
          f"{min(onset_clearance):.2e} .. {max(onset_clearance):.2e} m")
    assert same_pair >= 11
    # where MuJoCo first reports contact, the C check also says the surfaces touch
    assert all(-2e-3 <= d <= 1e-9 for d in onset_clearance)


def test_servos_track_a_move_without_contact(cfg, physics):
    q0, q1 = np.array(cfg.arm.poses["park"]), np.array(cfg.arm.poses["decon"])
    physics.set_q(q0)
    err = 0.0
    t0 = time.process_time()
    n = 3000
    for k in range(1, n + 1):
        s = k / n
        physics.command(q0 + s * (q1 - q0), (q1 - q0) / 3.0)
        physics.step(1)
        err = max(err, float(np.max(np.abs(physics.q() - (q0 + s * (q1 - q0))))))
        assert not physics.contacts()
    cpu = time.process_time() - t0
    physics.command(q1)
    physics.step(500)
    print(f"max tracking error {err:.2e} rad; {n / cpu:.0f} steps per CPU second with per-step checks")
    assert err < 0.01 and float(np.max(np.abs(physics.q() - q1))) < 1e-3


class _Stamp:
    def __init__(self, t: float) -> None:
        self.sec, self.nanosec = int(t), int(round((t - int(t)) * 1e9))


class _Point:
    def __init__(self, q, t: float) -> None:
        self.positions, self.time_from_start = list(q), _Stamp(t)


class _Msg:
    def __init__(self, names, points) -> None:
        self.joint_names, self.points = names, points


def test_trajectory_controller_semantics(cfg):
    names = [j.name for j in cfg.arm.joints]
    cur = np.zeros(6)
    goal = np.arange(6) * 0.1
    traj = from_message(_Msg(names, [_Point(goal, 2.0)]), names, 10.0, cur)
    q, qd, done = traj.sample(11.0)  # halfway, interpolated from the current command
    assert np.allclose(q, goal / 2) and np.allclose(qd, goal / 2.0) and not done
    q, qd, done = traj.sample(13.0)
    assert np.allclose(q, goal) and not qd.any() and done
    # joints in another order are reordered by name
    rev = from_message(_Msg(names[::-1], [_Point(goal[::-1], 1.0)]), names, 0.0, cur)
    assert np.allclose(rev.sample(5.0)[0], goal)
    hold = from_message(_Msg(names, []), names, 3.0, goal)  # empty: hold the current command
    assert np.allclose(hold.sample(4.0)[0], goal)
    with pytest.raises(TrajectoryRejected):
        from_message(_Msg(names[:5], [_Point(goal[:5], 1.0)]), names, 0.0, cur)
    with pytest.raises(TrajectoryRejected):
        from_message(_Msg(names, [_Point(goal, 1.0), _Point(goal, 1.0)]), names, 0.0, cur)
    with pytest.raises(TrajectoryRejected):
        from_message(_Msg(names, [_Point([math.nan] * 6, 1.0)]), names, 0.0, cur)
