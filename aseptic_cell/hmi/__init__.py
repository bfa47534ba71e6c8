"""Operator HMI: a FastAPI web application fed by the ROS graph (issue 7).

* :mod:`.config`  - ``config/hmi.yaml`` model (loopback by default).
* :mod:`.errors`  - the typed, numbered error catalogue of the command API (HABITS 12).
* :mod:`.hub`     - fan-out of state snapshots to browsers through bounded per-client queues
  (HABITS 13; ARCHITECTURE rule 4: observation never becomes control).
* :mod:`.backend` - what the web app needs from the cell (:class:`CellBackend`).
* :mod:`.ros_backend` - that, over ROS 2 (own rclpy Context on a background thread).
* :mod:`.app`     - routes, sessions, CSRF, role checks, e-signatures.
"""

from .config import HmiConfig, load_hmi_config

__all__ = ["HmiConfig", "load_hmi_config"]
