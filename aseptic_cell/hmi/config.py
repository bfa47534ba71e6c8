"""``config/hmi.yaml``: where the HMI listens and how it streams (HABITS 11: typed, bounded)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from aseptic_cell.config.base import Model, PositiveFinite


class HmiConfigError(ValueError):
    """``hmi.yaml`` is malformed or invalid (message names the file and field)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HmiConfig(Model):
    host: str = Field(default="127.0.0.1", description="bind address; loopback unless allow_remote")
    port: int = Field(default=8700, ge=0, le=65535, description="TCP port (0 = any free port)")
    session_idle_timeout_s: PositiveFinite = Field(default=900.0, le=86400.0, description="idle log-out (s)")
    max_sessions: int = Field(default=64, ge=1, le=10000, description="concurrent log-in sessions")
    snapshot_rate_hz: PositiveFinite = Field(default=10.0, le=50.0, description="max state pushes per second")
    ws_queue_len: int = Field(default=256, ge=8, le=100000, description="per-browser event queue (drop-oldest)")
    ws_send_timeout_s: PositiveFinite = Field(
        default=5.0, le=120.0, description="disconnect a browser stuck this long"
    )
    trend_points: int = Field(default=1800, ge=10, le=100000, description="samples kept per trend series")
    trend_min_dt_s: float = Field(default=1.0, ge=0.0, le=3600.0, description="sim seconds between trend samples")
    command_timeout_s: PositiveFinite = Field(default=10.0, le=300.0, description="wait for a command's answer (s)")
    allow_remote: bool = Field(default=False, description="allow a non-loopback bind address")
    cookie_secure: bool = Field(default=False, description="mark the session cookie Secure (HTTPS only)")
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 2**20,
                                description="largest request body of any endpoint (413 above)")
    max_login_body_bytes: int = Field(default=4096, ge=256, le=65536,
                                      description="largest log-in body: refused unread above (413)")
    login_rate_per_min: PositiveFinite = Field(default=20.0, le=6000.0,
                                               description="log-in attempts per minute per client address")
    login_burst: int = Field(default=10, ge=1, le=1000, description="log-in attempts in a burst per address")
    api_rate_per_s: PositiveFinite = Field(default=50.0, le=10000.0, description="/api requests per s per address")
    api_burst: int = Field(default=200, ge=1, le=100000, description="/api requests in a burst per address")

    @model_validator(mode="after")
    def _loopback(self) -> HmiConfig:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; set allow_remote: true to serve it"
            )
        return self


def load_hmi_config(path: str | Path | None) -> HmiConfig:
    """Load ``hmi.yaml`` (defaults when ``path`` is None or the file is missing).

    Raises:
        HmiConfigError: malformed YAML or a validation problem.
    """
    if path is None or not Path(path).is_file():
        return HmiConfig()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return HmiConfig.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise HmiConfigError(f"{path}: {exc}") from exc
