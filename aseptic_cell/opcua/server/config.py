"""Pydantic model of ``config/opcua_server.yaml`` (the cell OPC UA server for MES/SCADA).

Secure by default: there is no setting that enables a None endpoint, anonymous access or a
built-in administrator. What can be tuned are the endpoint, the PKI directories and the
transport/session limits (kept low: asyncua's defaults allow 100 MB messages).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from aseptic_cell.auth._yaml import load_yaml_strict
from aseptic_cell.config.base import Model, PositiveFinite

from .flood import FloodLimits

__all__ = ["Identification", "Limits", "OpcUaServerConfig", "load_server_config"]

Port = Annotated[int, Field(ge=0, le=65535)]


class Limits(Model):
    """Transport and session limits (OPCUA_NOTES hole 3)."""

    max_chunk_size: int = Field(
        default=65535, ge=8192, le=1 << 20, description="largest chunk a client may send (bytes)"
    )
    max_message_size: int = Field(default=2 * 1024 * 1024, ge=65536, le=64 * 1024 * 1024)
    max_chunk_count: int = Field(default=64, ge=1, le=4096)
    max_connections: int = Field(default=160, ge=2, le=1000)
    max_unauthenticated_connections: int = Field(
        default=128, ge=1, le=999,
        description="connections without an activated session at once; the rest of max_connections is "
        "kept for authenticated sessions (a new connection evicts the least advanced pending one)",
    )
    max_unauthenticated_per_address: int = Field(default=16, ge=1, le=999)
    hello_timeout_s: PositiveFinite = Field(default=2.0, description="Hello within this after connecting")
    secure_channel_timeout_s: PositiveFinite = Field(
        default=5.0, description="a SignAndEncrypt channel with a trusted certificate within this"
    )
    max_pending_messages_per_connection: int = Field(default=32, ge=4, le=500)
    max_pending_activation_s: PositiveFinite = Field(
        default=10.0, description="an activated session within this (also after a session is closed)"
    )
    max_sessions: int = Field(default=32, ge=1, le=1000)
    max_subscriptions: int = Field(default=64, ge=1, le=1000)
    max_pending_logins: int = Field(
        default=4, ge=1, le=64, description="password checks queued at once; more are refused"
    )
    min_session_timeout_ms: PositiveFinite = 10_000.0
    max_session_timeout_ms: PositiveFinite = 600_000.0


    @model_validator(mode="after")
    def _consistent(self) -> Limits:
        self.flood_limits()  # raises ValueError when inconsistent
        return self

    def flood_limits(self) -> FloodLimits:
        return FloodLimits(
            max_connections=self.max_connections,
            max_unauthenticated=self.max_unauthenticated_connections,
            max_unauthenticated_per_address=self.max_unauthenticated_per_address,
            hello_timeout_s=self.hello_timeout_s,
            secure_channel_timeout_s=self.secure_channel_timeout_s,
            activation_timeout_s=self.max_pending_activation_s,
        )


class Identification(Model):
    """Machinery-style identification (OPC 40001-1) of the cell."""

    manufacturer: str = "aseptic_cell engineering"
    model: str = "ATMP isolator cell (simulated)"
    product_code: str = "ATMPCELL"
    serial_number: str = "SIM-0001"
    product_instance_uri: str = "urn:aseptic-cell:ATMPCell01"
    software_revision: str = "0.1.0"
    location: str = "simulation"


class OpcUaServerConfig(Model):
    """``config/opcua_server.yaml``."""

    endpoint: str = Field(
        default="opc.tcp://127.0.0.1:4850/aseptic_cell/", pattern=r"^opc\.tcp://[^/\s]+:\d+(/\S*)?$"
    )
    server_name: str = "aseptic_cell ATMPCell01 cell server"
    application_uri: str = "urn:aseptic-cell:ATMPCell01:cell-server"
    namespace_uri: str = "urn:aseptic-cell:opcua:cell"
    machine_name: str = Field(default="ATMPCell01", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    hostname: str = Field(default="localhost", description="DNS name written into the generated certificate")
    pki_dir: str | None = Field(
        default=None,
        description="own/ (generated cert + key), trusted/ (client certs), "
        "rejected/ (copies of refused certs); "
        "relative to this file; default $XDG_STATE_HOME/aseptic_cell/opcua_server/pki",
    )
    users_file: str = Field(default="users.yaml", description="relative to this file")
    certificate_days: int = Field(default=365, ge=1, le=3650)
    limits: Limits = Field(default_factory=Limits)
    identification: Identification = Field(default_factory=Identification)
    stale_after_s: PositiveFinite = Field(
        default=3.0, description="ROS data older than this is published as Uncertain"
    )
    command_timeout_s: PositiveFinite = Field(default=10.0, description="wait for /cell/batch/command")
    devices: list[str] = Field(default_factory=lambda: ["isolator", "vhp", "autoclave", "arm"])

    @field_validator("endpoint")
    @classmethod
    def _no_wildcard_default(cls, v: str) -> str:
        return v.rstrip() if v.endswith("/") else v + "/"

    # resolved paths (set by load_server_config; not YAML keys)
    def resolve(self, base_dir: Path) -> ResolvedPaths:
        if self.pki_dir:
            pki = Path(self.pki_dir).expanduser()
            pki = pki if pki.is_absolute() else base_dir / pki
        else:
            state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
            pki = state / "aseptic_cell" / "opcua_server" / "pki"
        users = Path(self.users_file).expanduser()
        return ResolvedPaths(
            pki_dir=pki, users_file=users if users.is_absolute() else base_dir / users, config_dir=base_dir
        )


class ResolvedPaths(Model):
    pki_dir: Path
    users_file: Path
    config_dir: Path


def load_server_config(path: str | Path) -> tuple[OpcUaServerConfig, ResolvedPaths]:
    """Load and validate ``opcua_server.yaml``; relative paths are resolved against its folder.

    Raises:
        OSError, yaml.YAMLError, pydantic.ValidationError.
    """
    p = Path(path)
    data = load_yaml_strict(p) or {}
    cfg = OpcUaServerConfig.model_validate(data)
    return cfg, cfg.resolve(p.resolve().parent)
