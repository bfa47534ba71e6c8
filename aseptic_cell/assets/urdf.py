"""URDF of the arm from ``config/arm.yaml``.

Kinematic structure (one revolute joint per DH row, standard DH T = Rz(theta) Tz(d) Tx(a) Rx(alpha)):

* ``world`` -fixed (``base`` pose)-> ``base_link`` (DH frame 0)
* ``dh_frame_{k-1}`` -revolute ``<joint k name>`` about z-> ``link_k`` (frame k-1 turned by theta)
* ``link_k`` -fixed (xyz = (a, 0, d), rpy = (alpha, 0, 0))-> ``dh_frame_k``

``base_link`` is ``dh_frame_0``. Collision capsules (configured in DH frame k) are written on the
moving body ``link_k`` as a cylinder plus two spheres (URDF before urdfdom 4 has no capsule),
with their pose moved by the fixed DH transform, so the ``dh_frame_k`` links stay empty frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .numbers import num, nums, rpy_from_matrix, rpy_matrix, z_to

ROBOT_NAME = "aseptic_cell_arm"
HW_NAMESPACE = "/arm_hw"
"""Namespace of the arm's hardware interface (controller manager, /arm_hw/joint_states,
/arm_hw/joint_trajectory_controller/joint_trajectory): the cell's own /joint_states stays the arm
node's, as with every other backend."""

CONTROLLERS_PLACEHOLDER = "@CONTROLLERS_YAML@"
"""Written where gz_ros2_control wants the controllers YAML's absolute path; launch/gazebo.launch.py
replaces it (no xacro, so nothing else would substitute a package path)."""

LINK_MASSES_KG = (4.0, 3.761, 8.058, 2.846, 1.37, 1.3, 0.365)
"""Mass of DH frame 0 (base) and of the bodies moved by joints 1..6 (kg). Base 4.0: ros-industrial
universal_robot ur_description/config/ur5e/physical_parameters.yaml; joints 1..6: Universal Robots,
"DH parameters for calculations of kinematics and dynamics", UR5e mass row. The mass is spread
over the body's collision capsules as solid cylinders [M] (an approximation of the inertia)."""

JOINT_EFFORT_NM = (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)
"""Joint effort limits (N m): ros-industrial universal_robot ur_description/config/ur5e/joint_limits.yaml."""


@dataclass(frozen=True)
class Inertial:
    mass: float
    com: np.ndarray  # (3,)
    inertia: np.ndarray  # (3, 3) about the com, in the link frame


def dh_fixed(row: Any) -> np.ndarray:
    """The fixed part of a DH row, Tz(d) Tx(a) Rx(alpha), as a 4x4 transform."""
    ca, sa = math.cos(row.alpha), math.sin(row.alpha)
    t = np.eye(4)
    t[:3, :3] = np.array([[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]])
    t[:3, 3] = (row.a, 0.0, row.d)
    return t


def capsule_in_body(link: Any, body_from_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """End points of a capsule in its body's frame, and its radius."""
    p0 = body_from_frame[:3, :3] @ np.asarray(link.p0, dtype=np.float64) + body_from_frame[:3, 3]
    p1 = body_from_frame[:3, :3] @ np.asarray(link.p1, dtype=np.float64) + body_from_frame[:3, 3]
    return p0, p1, float(link.radius)


def body_inertial(mass: float, capsules: list[tuple[np.ndarray, np.ndarray, float]]) -> Inertial:
    """Mass spread over capsules (as solid cylinders of length L + 2r), by volume."""
    parts = []
    for p0, p1, r in capsules:
        length = float(np.linalg.norm(p1 - p0)) + 2.0 * r
        axis = p1 - p0 if np.linalg.norm(p1 - p0) > 0 else np.array([0.0, 0.0, 1.0])
        parts.append((math.pi * r * r * length, 0.5 * (p0 + p1), r, length, z_to(axis)))
    vol = sum(p[0] for p in parts)
    com = sum(p[0] * p[1] for p in parts) / vol
    inertia = np.zeros((3, 3))
    for v, c, r, length, rot in parts:
        m = mass * v / vol
        side = m * (3.0 * r * r + length * length) / 12.0
        local = np.diag([side, side, 0.5 * m * r * r])
        d = c - com
        inertia += rot @ local @ rot.T + m * (float(d @ d) * np.eye(3) - np.outer(d, d))
    return Inertial(mass, com, 0.5 * (inertia + inertia.T))


def _origin(xyz: Any, rpy: Any) -> str:
    return f'<origin xyz="{nums(xyz)}" rpy="{nums(rpy)}"/>'


def _capsule_geoms(name: str, p0: np.ndarray, p1: np.ndarray, r: float, indent: str) -> list[str]:
    """cylinder + 2 spheres, as both collision and visual elements."""
    mid = 0.5 * (p0 + p1)
    length = float(np.linalg.norm(p1 - p0))
    rpy = rpy_from_matrix(z_to(p1 - p0)) if length > 0 else (0.0, 0.0, 0.0)
    shapes = [(f"{name}_cyl", _origin(mid, rpy), f'<cylinder radius="{num(r)}" length="{num(length)}"/>'),
              (f"{name}_end0", _origin(p0, (0, 0, 0)), f'<sphere radius="{num(r)}"/>'),
              (f"{name}_end1", _origin(p1, (0, 0, 0)), f'<sphere radius="{num(r)}"/>')]
    if length == 0:
        shapes = shapes[1:2]
    out = []
    for tag in ("collision", "visual"):
        for geom_name, origin, geom in shapes:
            out += [f'{indent}<{tag} name="{geom_name}">', f"{indent}  {origin}",
                    f"{indent}  <geometry>{geom}</geometry>"]
            if tag == "visual":
                out.append(f'{indent}  <material name="arm_grey"/>')
            out.append(f"{indent}</{tag}>")
    return out


def _link(name: str, inertial: Inertial | None, geoms: list[str]) -> list[str]:
    out = [f'  <link name="{name}">']
    if inertial is not None:
        i = inertial.inertia
        out += ["    <inertial>", f"      {_origin(inertial.com, (0, 0, 0))}",
                f'      <mass value="{num(inertial.mass)}"/>',
                f'      <inertia ixx="{num(i[0, 0])}" ixy="{num(i[0, 1])}" ixz="{num(i[0, 2])}" '
                f'iyy="{num(i[1, 1])}" iyz="{num(i[1, 2])}" izz="{num(i[2, 2])}"/>',
                "    </inertial>"]
    out += geoms
    out.append("  </link>")
    return out


def urdf_text(arm: Any) -> str:
    """The arm's URDF (text), with a ros2_control block for gz_ros2_control."""
    by_frame: dict[int, list[Any]] = {k: [] for k in range(7)}
    for link in arm.links:
        by_frame[link.frame].append(link)
    lines = ['<?xml version="1.0"?>',
             "<!-- Generated by `cellctl assets` from config/arm.yaml: do not edit by hand. -->",
             f'<robot name="{ROBOT_NAME}">',
             '  <material name="arm_grey"><color rgba="0.7 0.7 0.72 1"/></material>',
             '  <link name="world"/>',
             '  <joint name="world_joint" type="fixed">', '    <parent link="world"/>',
             '    <child link="base_link"/>', f"    {_origin(arm.base.xyz, arm.base.rpy)}", "  </joint>"]
    base_caps = [capsule_in_body(c, np.eye(4)) for c in by_frame[0]]
    geoms: list[str] = []
    for c, (p0, p1, r) in zip(by_frame[0], base_caps, strict=True):
        geoms += _capsule_geoms(c.name, p0, p1, r, "    ")
    lines += _link("base_link", body_inertial(LINK_MASSES_KG[0], base_caps) if base_caps else None, geoms)
    parent = "base_link"
    for k in range(1, 7):
        row, lim = arm.dh[k - 1], arm.joints[k - 1]
        fixed = dh_fixed(row)
        caps = [capsule_in_body(c, fixed) for c in by_frame[k]]
        if not caps:  # a body with no capsule still needs mass: a small sphere at the frame origin
            caps = [(fixed[:3, 3].copy(), fixed[:3, 3].copy(), 0.03)]
        geoms = []
        for c, (p0, p1, r) in zip(by_frame[k], caps, strict=False):
            geoms += _capsule_geoms(c.name, p0, p1, r, "    ")
        lines += [f'  <joint name="{lim.name}" type="revolute">', f'    <parent link="{parent}"/>',
                  f'    <child link="link_{k}"/>', f"    {_origin((0, 0, 0), (0, 0, 0))}",
                  '    <axis xyz="0 0 1"/>',
                  f'    <limit lower="{num(lim.min)}" upper="{num(lim.max)}" '
                  f'velocity="{num(lim.max_velocity)}" effort="{num(JOINT_EFFORT_NM[k - 1])}"/>',
                  "  </joint>"]
        lines += _link(f"link_{k}", body_inertial(LINK_MASSES_KG[k], caps), geoms)
        lines += [f'  <joint name="dh_frame_{k}_joint" type="fixed">', f'    <parent link="link_{k}"/>',
                  f'    <child link="dh_frame_{k}"/>',
                  f"    {_origin(fixed[:3, 3], rpy_from_matrix(fixed[:3, :3]))}", "  </joint>",
                  f'  <link name="dh_frame_{k}"/>']
        parent = f"dh_frame_{k}"
    park = arm.poses["park"]
    lines += ['  <ros2_control name="GazeboSimSystem" type="system">', "    <hardware>",
              "      <plugin>gz_ros2_control/GazeboSimSystem</plugin>", "    </hardware>"]
    for lim, q0 in zip(arm.joints, park, strict=True):
        lines += [f'    <joint name="{lim.name}">', '      <command_interface name="position">',
                  f'        <param name="min">{num(lim.min)}</param>',
                  f'        <param name="max">{num(lim.max)}</param>', "      </command_interface>",
                  '      <state_interface name="position">',
                  f'        <param name="initial_value">{num(q0)}</param>', "      </state_interface>",
                  '      <state_interface name="velocity"/>', "    </joint>"]
    lines += ["  </ros2_control>", "  <gazebo>",
              '    <plugin filename="gz_ros2_control-system"'
              ' name="gz_ros2_control::GazeboSimROS2ControlPlugin">',
              f"      <parameters>{CONTROLLERS_PLACEHOLDER}</parameters>",
              f"      <ros><namespace>{HW_NAMESPACE}</namespace></ros>", "    </plugin>", "  </gazebo>",
              "</robot>", ""]
    return "\n".join(lines)


def urdf_link_frames(urdf: str, q: np.ndarray) -> dict[str, np.ndarray]:
    """World transforms of every link of a URDF text for joint values ``q`` (by joint order of
    appearance among the revolute joints). Independent of the DH code: used to check the URDF."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(urdf)
    joints = root.findall("joint")
    frames: dict[str, np.ndarray] = {"world": np.eye(4)}
    k = 0
    for j in joints:  # written parent-before-child
        origin = j.find("origin")
        xyz = [float(v) for v in origin.get("xyz", "0 0 0").split()] if origin is not None else [0.0] * 3
        rpy = [float(v) for v in origin.get("rpy", "0 0 0").split()] if origin is not None else [0.0] * 3
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = rpy_matrix(rpy), xyz
        if j.get("type") == "revolute":
            th = float(q[k])
            k += 1
            rz = np.eye(4)
            rz[:2, :2] = [[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]
            t = t @ rz
        parent = j.find("parent").get("link")  # type: ignore[union-attr]
        child = j.find("child").get("link")  # type: ignore[union-attr]
        frames[str(child)] = frames[str(parent)] @ t
    return frames


__all__ = ["CONTROLLERS_PLACEHOLDER", "HW_NAMESPACE", "ROBOT_NAME", "urdf_link_frames", "urdf_text"]
