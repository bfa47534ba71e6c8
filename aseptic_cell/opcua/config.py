"""``config/opcua.yaml``: device-level OPC UA endpoints, the emulator and the bridge client.

One file says where each device's OPC UA server is (emulated or real), how the emulator
runs, and how the bridge backends (:class:`aseptic_cell.devices.opcua_backend.OpcUaBackend`)
watch their connection. The cell server for MES/SCADA has its own section in its own module
(``aseptic_cell/opcua/server/``); unknown top-level keys are refused here, so that section is
declared as an opaque mapping until its model is added.

Loading order for the backends (:func:`load_opcua_config`): an explicit path, else the
``ASEPTIC_CELL_OPCUA_CONFIG`` environment variable (a file), else ``opcua.yaml`` in the
configuration directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..config.base import Identifier, Model, PositiveFinite

ENV_CONFIG = "ASEPTIC_CELL_OPCUA_CONFIG"
FILE_NAME = "opcua.yaml"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class DeviceEndpoint(Model):
    endpoint: str = Field(
        description="opc.tcp URL of the device's server, e.g. opc.tcp://127.0.0.1:48410/aseptic/ISO1"
    )
    kind: str | None = Field(
        default=None, description="isolator | vhp | autoclave | arm (checked against cell.yaml when given)"
    )
    layouts: list[str] | None = Field(
        default=None, min_length=1,
        description="browse layouts (mapping.layouts) tried in order for this device; default: mapping.kinds[kind]",
    )

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme != "opc.tcp" or not u.hostname or not u.port:
            raise ValueError(f"endpoint must look like opc.tcp://host:port/path, got {v!r}")
        return v

    @property
    def host(self) -> str:
        return urlparse(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(urlparse(self.endpoint).port or 4840)


SecurityMode = Literal["none", "sign_and_encrypt"]


class DeviceServerSecurity(Model):
    """Security of the emulated device servers (issue 12 item 7)."""

    mode: SecurityMode = Field(
        default="none",
        description="none: SecurityPolicy None, anonymous, loopback only; sign_and_encrypt: Basic256Sha256 "
        "SignAndEncrypt, user name + password from users_file, trusted client certificates only "
        "(the cell server's hardening), for a HIL bench on a shared network",
    )
    pki_dir: str | None = Field(
        default=None,
        description="<pki>/<DEVICE>/own/cert.der (generated), <pki>/trusted/ (client certificates, DER/PEM), "
        "<pki>/rejected/; relative to opcua.yaml; default $XDG_STATE_HOME/aseptic_cell/opcua_devices/pki",
    )
    users_file: str = Field(default="users.yaml", description="accounts (relative to opcua.yaml)")
    command_roles: list[str] = Field(
        default_factory=lambda: ["supervisor", "engineer"], min_length=1,
        description="roles whose sessions may call the device's command methods",
    )
    fault_roles: list[str] = Field(
        default_factory=lambda: ["engineer"], min_length=1,
        description="roles whose sessions may call Emulator/InjectFault and ClearFault (when exposed)",
    )
    certificate_days: int = Field(default=365, ge=1, le=3650)

    def pki_root(self, base_dir: Path) -> Path:
        if self.pki_dir:
            p = Path(self.pki_dir).expanduser()
            return p if p.is_absolute() else base_dir / p
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "aseptic_cell" / "opcua_devices" / "pki"

    def users_path(self, base_dir: Path) -> Path:
        p = Path(self.users_file).expanduser()
        return p if p.is_absolute() else base_dir / p


class ClientSecurity(Model):
    """How the bridge backends log in to a device server in ``sign_and_encrypt`` mode."""

    mode: SecurityMode = "none"
    certificate: str | None = Field(default=None, description="the bridge's certificate (DER), relative to opcua.yaml")
    private_key: str | None = Field(default=None, description="its private key (PEM)")
    application_uri: str = Field(
        default="urn:aseptic-cell:opcua:bridge", description="must be in the certificate's SubjectAltName"
    )
    server_certificate: str | None = Field(
        default=None,
        description="the device server's certificate, pinned; {device} is replaced by the device id "
        "(default: the emulator's <pki>/{device}/own/cert.der)",
    )
    user: str | None = Field(default=None, description="account the bridge logs in as")
    password_env: str = Field(
        default="ASEPTIC_CELL_OPCUA_DEVICE_PASSWORD", description="environment variable holding its password"
    )


class EmulatorSettings(Model):
    sim_speed: PositiveFinite = Field(
        default=10.0, le=10000.0, description="sim seconds per wall second of the emulated world"
    )
    step_s: PositiveFinite | None = Field(
        default=None, le=10.0, description="sim step (s); default: cell.yaml sim.step_s"
    )
    update_period_s: PositiveFinite = Field(
        default=0.05, ge=0.001, le=5.0, description="wall period of the variable updates (s)"
    )
    min_sampling_interval_ms: float = Field(
        default=0.0, ge=0.0, le=10000.0, description="MinimumSamplingInterval advertised on the variables (ms)"
    )
    expose_fault_methods: bool = Field(
        default=False,
        description="create the Emulator/InjectFault and ClearFault methods "
        "(test hooks, off unless asked for: here or `cellctl emulate --fault-methods`; never on a real controller)",
    )
    security: DeviceServerSecurity = Field(default_factory=DeviceServerSecurity)
    loopback_only: bool = Field(default=True, description="refuse to bind to anything but a loopback address")
    max_message_size: int = Field(
        default=4 * 1024 * 1024,
        ge=65536,
        le=64 * 1024 * 1024,
        description="transport limit: largest message (bytes) (OPCUA_NOTES hole 3)",
    )
    max_chunk_count: int = Field(default=128, ge=1, le=4096, description="transport limit: chunks per message")


class ClientSettings(Model):
    publishing_interval_ms: float = Field(
        default=50.0, ge=1.0, le=10000.0, description="subscription publishing interval"
    )
    sampling_interval_ms: float = Field(
        default=0.0, ge=0.0, le=10000.0, description="requested sampling interval (0 = as fast as the server can)"
    )
    connect_timeout_s: PositiveFinite = Field(default=3.0, le=60.0, description="one connection attempt (s)")
    request_timeout_s: PositiveFinite = Field(default=2.0, le=60.0, description="one request (read, browse) (s)")
    health_period_s: PositiveFinite = Field(default=0.5, le=30.0, description="period of the status read (s)")
    health_timeout_s: PositiveFinite = Field(
        default=1.0, le=30.0, description="a status read slower than this = connection lost (s)"
    )
    silence_timeout_s: PositiveFinite = Field(
        default=3.0,
        le=120.0,
        description="no notification and no successful status read for this long = connection lost (s)",
    )
    backoff_initial_s: PositiveFinite = Field(default=0.25, le=10.0, description="first reconnect delay (s)")
    backoff_max_s: PositiveFinite = Field(default=2.0, le=300.0, description="reconnect delay cap (s)")
    session_timeout_s: PositiveFinite = Field(default=30.0, le=3600.0, description="requested session timeout (s)")
    security: ClientSecurity = Field(default_factory=ClientSecurity)


# ---------------------------------------------------------------- browse mapping (issue 18 item 6)
# A path element is "<alias>:<BrowseName>" (alias from mapping.namespaces; "0" = the OPC UA
# namespace) or "*" (every child object); "{device}" in a BrowseName is the device id.
STANDARD_NS = "http://opcfoundation.org/UA/"
DEFAULT_NAMESPACES: dict[str, str] = {
    "0": STANDARD_NS,
    "DI": "http://opcfoundation.org/UA/DI/",
    "LADS": "http://opcfoundation.org/UA/LADS/",
    "dev": "urn:aseptic-cell:device",
}


class BrowseLayout(Model):
    """Where the bridge finds one device's nodes, as browse paths (TranslateBrowsePathsToNodeIds
    and Browse, never NodeIds): a server of another vendor is driven by writing one of these."""

    device: list[str] = Field(min_length=1, description="path from Objects to the device object")
    clock: list[str] = Field(
        min_length=1, description="path (from the device) of the Double the device advances: its time (s)"
    )
    readings: list[list[str]] = Field(
        min_length=1,
        description="containers (paths from the device, '*' = every child object) whose variables are "
        "readings (key = BrowseName) and whose objects are functions (value: first of function_values)",
    )
    records: list[list[str]] = Field(
        default_factory=list, description="containers whose String variables hold JSON (lists, dicts)"
    )
    methods: list[str] | None = Field(
        default=None, description="container (path from the device) of one method per catalogue command"
    )
    commands: dict[str, list[str]] = Field(
        default_factory=dict, description="command -> path (from the device) of its method (over methods)"
    )
    rename: dict[str, str] = Field(default_factory=dict, description="BrowseName -> reading key")
    function_values: list[str] = Field(
        default_factory=lambda: ["LADS:SensorValue", "LADS:CurrentValue"],
        description="where a function object's value is (LADS sensor / control functions)",
    )

    def required_paths(self) -> list[list[str]]:
        """The paths a server must have (function_values are looked for only where their namespace is)."""
        return [self.device, self.clock, *self.readings, *self.records,
                *([self.methods] if self.methods else []), *self.commands.values()]

    def paths(self) -> list[list[str]]:
        return [*self.required_paths(), *([e] for e in self.function_values)]


# The built-in mapping, repeated in config/opcua.yaml (tests/hil/test_browse_mapping.py keeps the
# two equal). "lads": readings through the standard LADS model (LADSDeviceType -> FunctionalUnitSet
# -> functional units -> FunctionSet); "project": the contract of aseptic_cell/opcua/model.py
# (ProcessImage), for the arm, the process equipment, interop/device_server.js and an emulator
# started without the companion NodeSets.
_DEV_ROOT = ["dev:DeviceSet", "dev:{device}"]
DEFAULT_LAYOUTS: dict[str, dict[str, Any]] = {
    "lads": {"device": _DEV_ROOT, "clock": ["dev:SimTime"],
             "readings": [["LADS:FunctionalUnitSet", "*", "LADS:FunctionSet"]],
             "records": [["dev:Records"]], "methods": ["dev:Methods"]},
    "project": {"device": _DEV_ROOT, "clock": ["dev:SimTime"], "readings": [["dev:ProcessImage"]],
                "records": [["dev:Records"]], "methods": ["dev:Methods"]},
}
DEFAULT_KINDS: dict[str, list[str]] = {k: ["lads", "project"] for k in ("isolator", "vhp", "autoclave")}


class BrowseMapping(Model):
    """``mapping`` of opcua.yaml. What a file gives is added to the built-in entries (a layout,
    namespace alias or kind given under a built-in name replaces that one)."""

    namespaces: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_NAMESPACES),
                                       description="alias -> namespace URI (indices are read from the server)")
    layouts: dict[str, BrowseLayout] = Field(
        default_factory=lambda: {k: BrowseLayout.model_validate(v) for k, v in DEFAULT_LAYOUTS.items()})
    kinds: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_KINDS.items()},
                                        description="device kind -> layouts tried in order")
    default: list[str] = Field(default_factory=lambda: ["project"], min_length=1,
                               description="layouts for a kind not in kinds")

    @model_validator(mode="before")
    @classmethod
    def _over_the_built_in(cls, data: Any) -> Any:
        """Given namespaces, layouts and kinds are added to (or replace by name) the built-in ones."""
        if isinstance(data, dict):
            data = dict(data)
            for key, base in (("namespaces", DEFAULT_NAMESPACES), ("layouts", DEFAULT_LAYOUTS),
                              ("kinds", DEFAULT_KINDS)):
                if isinstance(data.get(key), dict):
                    data[key] = {**base, **data[key]}
        return data

    @model_validator(mode="after")
    def _known(self) -> BrowseMapping:
        if self.namespaces.get("0", STANDARD_NS) != STANDARD_NS:
            raise ValueError(f"namespace alias '0' is the OPC UA namespace {STANDARD_NS}")
        self.namespaces.setdefault("0", STANDARD_NS)
        for name, layout in self.layouts.items():
            for path in layout.paths():
                for el in path:
                    if el == "*":
                        continue
                    alias, sep, bname = el.partition(":")
                    if not sep or not bname:
                        raise ValueError(f"layout {name}: path element {el!r} is not '<alias>:<BrowseName>' or '*'")
                    if alias not in self.namespaces:
                        raise ValueError(f"layout {name}: namespace alias {alias!r} (in {el!r}) is not in "
                                         f"mapping.namespaces {sorted(self.namespaces)}")
        for kind, names in [*self.kinds.items(), ("default", self.default)]:
            missing = [n for n in names if n not in self.layouts]
            if missing or not names:
                raise ValueError(f"mapping.kinds.{kind}: unknown layouts {missing} (have {sorted(self.layouts)})")
        return self

    def for_device(self, kind: str, ep: DeviceEndpoint | None = None) -> list[tuple[str, BrowseLayout]]:
        names = (ep.layouts if ep is not None and ep.layouts else None) or self.kinds.get(kind) or self.default
        return [(n, self.layouts[n]) for n in names]


class OpcUaConfig(Model):
    """The whole ``opcua.yaml``."""

    devices: dict[Identifier, DeviceEndpoint] = Field(description="device id -> its OPC UA server")
    emulator: EmulatorSettings = Field(default_factory=EmulatorSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    mapping: BrowseMapping = Field(
        default_factory=BrowseMapping, description="how the bridge finds each device's nodes (browse paths)"
    )
    cell_server: dict[str, Any] | None = Field(
        default=None, description="the cell server for MES/SCADA (validated by aseptic_cell.opcua.server)"
    )
    _base_dir: Path = PrivateAttr(default_factory=lambda: Path.cwd())

    @property
    def base_dir(self) -> Path:
        """The folder of opcua.yaml (relative paths in it are resolved against it)."""
        return self._base_dir

    @model_validator(mode="after")
    def _device_layouts_known(self) -> OpcUaConfig:
        for dev, ep in self.devices.items():
            missing = [n for n in ep.layouts or [] if n not in self.mapping.layouts]
            if missing:
                raise ValueError(f"devices.{dev}.layouts: unknown layouts {missing} "
                                 f"(have {sorted(self.mapping.layouts)})")
        return self

    @model_validator(mode="after")
    def _none_only_on_loopback(self) -> OpcUaConfig:
        if self.emulator.security.mode == "none" and not self.emulator.loopback_only:
            raise ValueError(
                "emulator.loopback_only: false needs emulator.security.mode: sign_and_encrypt "
                "(SecurityPolicy None and anonymous access only on loopback)"
            )
        return self

    def endpoint(self, device_id: str) -> DeviceEndpoint:
        try:
            return self.devices[device_id]
        except KeyError:
            raise KeyError(
                f"no OPC UA endpoint for device {device_id!r} in {FILE_NAME}; "
                f"configured: {sorted(self.devices)}"
            ) from None


class OpcUaConfigError(ValueError):
    pass


def config_path(path: str | Path | None = None, config_dir: str | Path | None = None) -> Path:
    if path:
        return Path(path)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    if config_dir is None:
        from ..config import default_config_dir

        config_dir = default_config_dir()
    return Path(config_dir) / FILE_NAME


def parse_opcua_config(data: Any, source: str = FILE_NAME) -> OpcUaConfig:
    try:
        return OpcUaConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        ]
        raise OpcUaConfigError("\n".join(lines)) from None


def load_opcua_config(path: str | Path | None = None, config_dir: str | Path | None = None) -> OpcUaConfig:
    """Load and validate ``opcua.yaml`` (see the module doc for where it is looked for).

    Raises:
        OpcUaConfigError: missing file, bad YAML or a validation problem (file, field, reason).
    """
    p = config_path(path, config_dir)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OpcUaConfigError(f"{p}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise OpcUaConfigError(f"{p}: invalid YAML: {exc}") from None
    cfg = parse_opcua_config(data, str(p))
    cfg._base_dir = p.resolve().parent
    return cfg


def check_against_cell(cfg: OpcUaConfig, cell_cfg: Any) -> list[str]:
    """Cross-file problems: endpoints for unknown devices, wrong kinds, shared ports, non-loopback hosts."""
    problems = []
    kinds = {
        cell_cfg.layout.isolator.id: "isolator",
        cell_cfg.layout.vhp_unit.id: "vhp",
        cell_cfg.layout.autoclave.id: "autoclave",
        cell_cfg.layout.robot.id: "arm",
    }
    pe = getattr(cell_cfg.layout, "process_equipment", None)
    if pe is not None and pe.enabled:  # process equipment (issue 14 item 1)
        kinds.update({pe.unit(k).id: k for k in ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")})
    seen: dict[tuple[str, int], str] = {}
    for dev, ep in cfg.devices.items():
        if dev not in kinds:
            problems.append(f"{FILE_NAME}: devices.{dev}: not a device of cell.yaml ({sorted(kinds)})")
        elif ep.kind is not None and ep.kind != kinds[dev]:
            problems.append(f"{FILE_NAME}: devices.{dev}.kind: {ep.kind!r} but cell.yaml says {kinds[dev]!r}")
        key = (ep.host, ep.port)
        if key in seen:
            problems.append(
                f"{FILE_NAME}: devices.{dev}.endpoint: port {ep.port} already used by {seen[key]}"
            )
        seen[key] = dev
        if cfg.emulator.loopback_only and ep.host not in LOOPBACK_HOSTS:
            problems.append(
                f"{FILE_NAME}: devices.{dev}.endpoint: host {ep.host} is not loopback "
                "(emulator.loopback_only)"
            )
    return problems
