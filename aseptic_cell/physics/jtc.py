"""What joint_trajectory_controller does with a JointTrajectory on its topic, for the MuJoCo node:
a new trajectory replaces the running one and starts now, from the current command when its first
point is later than 0; positions are interpolated linearly between points (positions only), the
last point is held; an empty trajectory holds the current position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class TrajectoryRejected(ValueError):
    pass


@dataclass
class ActiveTrajectory:
    t0: float
    times: np.ndarray  # (N,) from 0, strictly increasing
    q: np.ndarray  # (N, 6)

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """Reference position, velocity and whether the trajectory is finished, at time ``t``."""
        tau = t - self.t0
        if tau >= self.times[-1]:
            return self.q[-1].copy(), np.zeros(self.q.shape[1]), True
        k = int(np.searchsorted(self.times, max(tau, 0.0), side="right")) - 1
        k = min(max(k, 0), len(self.times) - 2)
        h = self.times[k + 1] - self.times[k]
        slope = (self.q[k + 1] - self.q[k]) / h
        return self.q[k] + slope * (max(tau, 0.0) - self.times[k]), slope, False


def from_message(
    msg: Any, joint_names: list[str], now: float, current_cmd: np.ndarray
) -> ActiveTrajectory:
    """Build the trajectory a JointTrajectory message asks for. Raises TrajectoryRejected."""
    names = list(msg.joint_names)
    points = list(msg.points)
    if not points:  # JTC: an empty trajectory stops and holds the current position
        return ActiveTrajectory(now, np.array([0.0, 1e-9]), np.vstack([current_cmd, current_cmd]))
    if sorted(names) != sorted(joint_names) or len(names) != len(joint_names):
        raise TrajectoryRejected(
            f"joint_names must be the {len(joint_names)} joints {joint_names}, got {names}"
        )
    order = [names.index(n) for n in joint_names]
    times, qs = [], []
    for p in points:
        t = p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
        pos = np.asarray(list(p.positions), dtype=np.float64)
        if pos.shape != (len(joint_names),) or not np.all(np.isfinite(pos)):
            raise TrajectoryRejected("every point needs one finite position per joint")
        times.append(t)
        qs.append(pos[order])
    t_arr = np.array(times)
    if np.any(np.diff(t_arr) <= 0) or t_arr[0] < 0:
        raise TrajectoryRejected("time_from_start must be >= 0 and strictly increasing")
    q_arr = np.array(qs)
    if t_arr[0] > 0:  # start from where the command is now
        t_arr = np.concatenate([[0.0], t_arr])
        q_arr = np.vstack([current_cmd, q_arr])
    elif len(t_arr) == 1:
        t_arr = np.array([0.0, 1e-9])
        q_arr = np.vstack([q_arr, q_arr])
    return ActiveTrajectory(now, t_arr, q_arr)
