"""The graph confined to the host by the product's own settings (issue 12).

Every process the product starts gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the Fast
DDS profile ``config/fastdds_host_only.xml`` (shared memory + UDPv4 on 127.0.0.1 only) through
``FASTRTPS_DEFAULT_PROFILES_FILE`` — the variable the wheels' Fast DDS 2.14 (libfastrtps)
reads; ``FASTDDS_DEFAULT_PROFILES_FILE`` is the Fast DDS 3 name and is set too, for a ROS
installation built on it. A multi-host cell is an explicit configuration:
``ASEPTIC_CELL_MULTI_HOST=1`` leaves the discovery range and the profile to the site (an
IEC 62443 zone boundary, README "Command plane security").
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

MULTI_HOST_ENV = "ASEPTIC_CELL_MULTI_HOST"
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def host_only_profile() -> Path:
    from ..config import default_config_dir

    return Path(default_config_dir()) / "fastdds_host_only.xml"


def multi_host(env: Mapping[str, str]) -> bool:
    return env.get(MULTI_HOST_ENV, "").strip().lower() in ("1", "true", "yes")


def confine_to_host(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set the host-only settings in ``env`` (default ``os.environ``; before rclpy is
    initialised) unless the cell is configured multi-host; a profile already named is kept
    (a site's own). Returns ``env``."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    if multi_host(target):
        return target
    target["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    profile = next((target[v] for v in PROFILE_VARS if target.get(v)), "") or str(host_only_profile())
    for v in PROFILE_VARS:
        target[v] = profile
    return target
