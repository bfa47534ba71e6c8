"""``cellctl emulate``: the emulated hardware — the sim models behind one OPC UA server per device.

One process owns one :class:`aseptic_cell.sim.cell.SimCell` (its own clock, stepped at
``emulator.sim_speed`` sim s per wall s; it stands in for the physical world) and runs one
asyncua server per device on the endpoint ``config/opcua.yaml`` gives it. Each server shows
its device the way the device's controller would (address space: :mod:`.model`): a variable
per reading, a method per catalogue command, Machinery identification and item state,
LADS functional units / program manager (isolator, VHP unit, autoclave) or OPC 40010
motion device / safety states (arm), and ``SimTime``. With the companion NodeSets loaded
(:mod:`.nodesets`) the device object itself is a standard ``LADSDeviceType`` (with
``FunctionalUnitType`` units) or ``MotionDeviceSystemType`` (motion device, ``AxisType`` axes
with the joint state, ``SafetyStateType``) — see docs/opcua_cell_server.md. Values are written every
``emulator.update_period_s`` (changed values only; ``SimTime`` every time) and at once after
a command or fault.

Security of these device-level servers (``emulator.security.mode``):

* ``none`` (default; loopback only — the config refuses ``loopback_only: false`` with it):
  SecurityPolicy None, the plant-floor PLCs' level, a documented exception to the cell's
  secure-by-default rule. What is closed anyway: a user manager is installed (anonymous =
  plain User role, every user name refused, so no "admin with any password", OPCUA_NOTES
  hole 2); variables are read-only; transport limits are lowered (hole 3).
* ``sign_and_encrypt`` (a HIL bench on a shared network, issue 12 item 7): each device
  server is the cell server's hardened asyncua server (:mod:`.server.security`): only
  Basic256Sha256/SignAndEncrypt (None channels carry discovery only), user name + password
  from ``users_file`` (no anonymous, no admin), client certificates only from
  ``<pki>/trusted/``, the connection-flood guard. Command methods need a session whose role
  is in ``command_roles``; the fault methods one in ``fault_roles``; otherwise
  ``BadUserAccessDenied``. The record's user is the session's account.

The ``Emulator/InjectFault`` and ``ClearFault`` methods are test hooks, never present on a real
controller: off unless asked for (``expose_fault_methods`` or ``cellctl emulate --fault-methods``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import signal
import time
from typing import Any

from asyncua import Server, ua
from asyncua.common.connection import TransportLimits
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from ..devices.commands import CATALOGUE, CONTRACTS, InvalidArguments
from .companion import (
    LADS_DEVICE_TYPE,
    LADS_FUNCTION_SET_TYPE,
    LADS_FUNCTIONAL_UNIT_TYPE,
    ROBOTICS_AXIS_TYPE,
    ROBOTICS_MOTION_DEVICE_SYSTEM_TYPE,
    ROBOTICS_MOTION_DEVICE_TYPE,
    ROBOTICS_SAFETY_STATE_TYPE,
    add_typed_object,
    child,
    set_value,
)
from .config import LOOPBACK_HOSTS, DeviceEndpoint, EmulatorSettings, OpcUaConfig
from .model import (
    ARG_NAMES_IN,
    ARG_NAMES_OUT,
    DEVICE_CLASS,
    MODEL,
    NS_URI,
    functional_unit,
    is_record,
    model_readings,
    nid_fault,
    nid_folder,
    nid_method,
    nid_reading,
    nid_record,
    nid_simtime,
    record_json,
)
from .nodesets import CompanionSpecs, NodeSetsMissing, load_companion_specs
from .uatyping import node_id, status_code

log = logging.getLogger("aseptic_cell.emulator")


class _WallClock:
    def now(self) -> float:
        return time.time()


class DeviceUserManager(UserManager):
    """Device level: anonymous sessions get the User role; any user name is refused.

    (Only the Anonymous token type is offered, so X509 user tokens never get here; the
    ``certificate`` argument is the channel's peer certificate, empty on a None channel.)
    """

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username:
            return None
        return User(role=UserRole.User)


def _variant(value: Any, declared: ua.VariantType | None) -> ua.Variant:
    if value is None:
        return ua.Variant(None, ua.VariantType.Null)
    if isinstance(value, bool):
        return ua.Variant(value, ua.VariantType.Boolean)
    if isinstance(value, int):
        if declared == ua.VariantType.Double:
            return ua.Variant(float(value), ua.VariantType.Double)
        return ua.Variant(value, ua.VariantType.Int64)
    if isinstance(value, float):
        return ua.Variant(value, ua.VariantType.Double)
    return ua.Variant(str(value), ua.VariantType.String)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _arg(name: str, vtype: ua.VariantType, desc: str) -> ua.Argument:
    a = ua.Argument()
    a.Name = name
    a.DataType = node_id(vtype.value)
    a.ValueRank = -1
    a.ArrayDimensions = []
    a.Description = ua.LocalizedText(desc)
    return a


IN_ARGS = [
    _arg("ArgsJson", ua.VariantType.String, "JSON object of the catalogue arguments"),
    _arg("User", ua.VariantType.String, "user id of the requester"),
    _arg("Reason", ua.VariantType.String, "reason, for the record"),
]
OUT_ARGS = [
    _arg("Accepted", ua.VariantType.Boolean, "the device accepted and executed the command"),
    _arg("Code", ua.VariantType.String, "OK or the refusal code"),
    _arg("Reason", ua.VariantType.String, "why it was refused"),
    _arg("PayloadJson", ua.VariantType.String, "command result (JSON object)"),
]
assert tuple(a.Name for a in IN_ARGS) == ARG_NAMES_IN and tuple(a.Name for a in OUT_ARGS) == ARG_NAMES_OUT


class DeviceServer:
    """One device's OPC UA server over the shared SimCell."""

    def __init__(
        self, world: EmulatedWorld, device_id: str, kind: str, ep: DeviceEndpoint, settings: EmulatorSettings
    ) -> None:
        self.world = world
        self.device_id = device_id
        self.kind = kind
        self.ep = ep
        self.settings = settings
        self.server: Server | None = None
        self.ns = 0
        self._nodes: dict[
            str, tuple[ua.NodeId, ua.VariantType | None, bool]
        ] = {}  # key -> (id, type, record)
        self._last: dict[str, Any] = {}
        self._simtime: ua.NodeId | None = None
        self._item_state: ua.NodeId | None = None
        self._trip: ua.NodeId | None = None
        self.companion: CompanionSpecs | None = None
        self._lads_map: dict[str, Any] | None = getattr(CONTRACTS.get(kind), "LADS_PROGRAMS", None)
        self._lads: Any = None  # .lads.LadsProgramUnit of the program-running functional unit

    def _nid(self, s: str) -> ua.NodeId:
        return node_id(s, self.ns)

    @property
    def secure(self) -> bool:
        return self.settings.security.mode == "sign_and_encrypt"

    def _secure_server(self) -> Server:
        from ..auth import UserDirectory
        from .server.flood import FloodGuard, FloodLimits
        from .server.pki import ServerPki, TrustList
        from .server.security import CellUaServer, DirectoryUserManager

        sec, base = self.settings.security, self.world.ocfg.base_dir
        root = sec.pki_root(base)
        self.directory = UserDirectory.from_file(sec.users_path(base), _WallClock())
        self.pki = ServerPki(root / self.device_id)
        self.trust = TrustList(root / "trusted", root / "rejected")
        guard = FloodGuard(
            FloodLimits(max_connections=40, max_unauthenticated=32, max_unauthenticated_per_address=8), []
        )
        server = CellUaServer(DirectoryUserManager(self.directory), self.trust, guard)
        server.iserver.max_connections = 40
        server.iserver.max_pending_activation_seconds = 0  # the guard's deadlines
        return server

    async def start(self) -> None:
        if self.settings.loopback_only and self.ep.host not in LOOPBACK_HOSTS:
            raise ValueError(f"{self.device_id}: refusing to bind {self.ep.host} (emulator.loopback_only)")
        app_uri = f"urn:aseptic-cell:emulator:{self.device_id}"
        server = self._secure_server() if self.secure else Server(user_manager=DeviceUserManager())
        await server.init()
        server.set_endpoint(self.ep.endpoint)
        server.set_server_name(f"aseptic_cell emulated {self.kind} {self.device_id}")
        await server.set_application_uri(app_uri)
        if self.secure:
            sec = self.settings.security
            self.pki.ensure(application_uri=app_uri, common_name=f"aseptic_cell emulated {self.device_id}",
                            hostnames=sorted({"localhost", self.ep.host}), days=sec.certificate_days)
            await server.load_certificate(str(self.pki.cert_path))
            await server.load_private_key(str(self.pki.key_path))
            n = self.trust.reload()
            log.info("%s: SignAndEncrypt; %d trusted client certificate(s) in %s", self.device_id, n,
                     self.trust.trusted_dir)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.limits = TransportLimits(
            max_recv_buffer=65535,
            max_send_buffer=65535,
            max_chunk_count=self.settings.max_chunk_count,
            max_message_size=self.settings.max_message_size,
        )
        try:  # the companion NodeSets first: their namespace indices must match the cache's
            self.companion = await load_companion_specs(server)
        except NodeSetsMissing as exc:
            self.companion = None
            log.error("%s: %s; serving without the standard LADS/Robotics/Machinery types", self.device_id, exc)
        self.ns = await server.register_namespace(NS_URI)
        self.server = server
        await self._build()

    async def listen(self) -> None:
        assert self.server is not None
        await self.server.start()
        log.info("%s (%s) serving on %s", self.device_id, self.kind, self.ep.endpoint)

    async def stop(self) -> None:
        if self.server is not None:
            try:
                await self.server.stop()
            except Exception:  # noqa: BLE001 - shutting down
                pass
            self.server = None

    # ------------------------------------------------------------------ address space
    async def _folder(self, parent: Any, path: str, name: str) -> Any:
        return await parent.add_folder(
            self._nid(nid_folder(self.device_id, path)), ua.QualifiedName(name, self.ns)
        )

    async def _object(self, parent: Any, path: str, name: str) -> Any:
        return await parent.add_object(
            self._nid(nid_folder(self.device_id, path)), ua.QualifiedName(name, self.ns)
        )

    async def _prop(self, parent: Any, path: str, name: str, value: Any) -> Any:
        return await parent.add_property(
            self._nid(nid_folder(self.device_id, path)),
            ua.QualifiedName(name, self.ns),
            ua.Variant(value, ua.VariantType.String),
        )

    async def _build(self) -> None:
        assert self.server is not None
        dev, ns = self.device_id, self.ns
        objects = self.server.nodes.objects
        devset = await objects.add_folder(
            node_id(f"{dev}/DeviceSet", ns), ua.QualifiedName("DeviceSet", ns)
        )
        root = await self._root(devset)
        ident = await self._object(root, "Identification", "Identification")
        for name, value in (
            ("Manufacturer", "aseptic_cell emulator"),
            ("Model", MODEL[self.kind]),
            ("SerialNumber", f"EMU-{dev}"),
            ("ProductInstanceUri", f"urn:aseptic-cell:device:{dev}"),
            ("DeviceClass", DEVICE_CLASS[self.kind]),
            ("SoftwareRevision", "1"),
        ):
            await self._prop(ident, f"Identification/{name}", name, value)
        mis = await self._object(root, "MachineryItemState", "MachineryItemState")
        st = await mis.add_variable(
            self._nid(f"{dev}/MachineryItemState/CurrentState"),
            ua.QualifiedName("CurrentState", ns),
            ua.Variant("NotExecuting", ua.VariantType.String),
        )
        self._item_state = st.nodeid
        mom = await self._object(root, "MachineryOperationMode", "MachineryOperationMode")
        await mom.add_variable(
            self._nid(f"{dev}/MachineryOperationMode/CurrentState"),
            ua.QualifiedName("CurrentState", ns),
            ua.Variant("Processing", ua.VariantType.String),
        )
        simtime = await root.add_variable(
            self._nid(nid_simtime(dev)),
            ua.QualifiedName("SimTime", ns),
            ua.Variant(self.world.cell.now(), ua.VariantType.Double),
        )
        self._simtime = simtime.nodeid
        await self._set_sampling(simtime)

        pi = await self._folder(root, "ProcessImage", "ProcessImage")
        rec = await self._folder(root, "Records", "Records")
        values = self.world.readings(dev)
        for key, value in values.items():
            if key == "t":
                continue
            if is_record(value) or (value is None and key.startswith("status.")):
                node = await rec.add_variable(
                    self._nid(nid_record(dev, key)),
                    ua.QualifiedName(key, ns),
                    ua.Variant(record_json(value), ua.VariantType.String),
                )
                self._nodes[key] = (node.nodeid, ua.VariantType.String, True)
                self._last[key] = value
                continue
            v = _variant(value, None)
            datatype = None if value is None else node_id(v.VariantType.value)
            if datatype is None:
                node = await pi.add_variable(
                    self._nid(nid_reading(dev, key)),
                    ua.QualifiedName(key, ns),
                    v,
                    datatype=node_id(ua.ObjectIds.BaseDataType),
                )
            else:
                node = await pi.add_variable(
                    self._nid(nid_reading(dev, key)), ua.QualifiedName(key, ns), v, datatype=datatype
                )
            await self._set_sampling(node)
            self._nodes[key] = (node.nodeid, None if value is None else v.VariantType, False)
            self._last[key] = value
        await self._companion_shape(root, values)
        await self._standard_model(root, values)
        await self._methods(root)

    async def _root(self, devset: Any) -> Any:
        """The device object: a LADSDeviceType (isolator, VHP unit, autoclave) or an OPC 40010
        MotionDeviceSystemType (arm) instance when the companion NodeSets are loaded; it is also
        organised under DI's standard DeviceSet."""
        name = ua.QualifiedName(self.device_id, self.ns)
        spec = self.companion
        if spec is None:
            return await devset.add_object(self._nid(self.device_id), name)
        if self.kind == "arm":
            tid = node_id(ROBOTICS_MOTION_DEVICE_SYSTEM_TYPE, spec.ns["Robotics"])
        else:
            tid = node_id(LADS_DEVICE_TYPE, spec.ns["LADS"])
        root = await add_typed_object(self.server, devset, self._nid(self.device_id), name, tid)
        assert self.server is not None
        di_devset = self.server.get_node(node_id(5001, spec.ns["DI"]))  # DI: Objects/DeviceSet
        await di_devset.add_reference(root.nodeid, ua.ObjectIds.Organizes, forward=True, bidirectional=False)
        return root

    async def _standard_model(self, root: Any, values: dict[str, Any]) -> None:
        """Fill the standard parts of the typed device object (issue 18; see docs/opcua_cell_server.md)."""
        spec = self.companion
        if spec is None:
            return
        assert self.server is not None
        nss = (0, spec.ns["DI"], spec.ns["Machinery"], spec.ns["LADS"], spec.ns["Robotics"], spec.ns["IA"])
        ident = {
            "Manufacturer": ua.LocalizedText("aseptic_cell emulator"),
            "Model": ua.LocalizedText(MODEL[self.kind]),
            "SerialNumber": f"EMU-{self.device_id}",
            "ProductInstanceUri": f"urn:aseptic-cell:device:{self.device_id}",
            "ProductCode": DEVICE_CLASS[self.kind],
            "SoftwareRevision": "1",
            "ComponentName": ua.LocalizedText(self.device_id),
            "DeviceClass": DEVICE_CLASS[self.kind],
        }
        for base in ([], ["Identification"], ["MachineryBuildingBlocks", "Identification"]):
            holder = await child(root, base, nss) if base else root
            if holder is None:
                continue
            for key, value in ident.items():
                await set_value(await child(holder, [key], nss), value)
        self._std: dict[str, list[Any]] = {}
        if self.kind == "arm":
            await self._robotics(root, values, spec.ns["Robotics"], nss)
            return
        fus = await child(root, ["FunctionalUnitSet"], nss)
        if fus is None:
            return
        units = sorted({fu for key in self._nodes if (fu := functional_unit(self.kind, key)) is not None})
        for fu in units:
            unit = await add_typed_object(
                self.server, fus, self._nid(f"{self.device_id}/lads/{fu}"), ua.QualifiedName(fu, spec.ns["LADS"]),
                node_id(LADS_FUNCTIONAL_UNIT_TYPE, spec.ns["LADS"]),
            )
            if fu == (self._lads_map or {}).get("unit"):
                from .lads import LadsProgramUnit

                self._lads = LadsProgramUnit(self, unit, spec.ns["LADS"], self._lads_map or {})
                await self._lads.build(values)
            fset = await child(unit, ["FunctionSet"], nss)
            if fset is None:  # Optional in FunctionalUnitType (add_typed_object makes Mandatory ones only)
                fset = await add_typed_object(
                    self.server, unit, self._nid(f"{self.device_id}/lads/{fu}/FunctionSet"),
                    ua.QualifiedName("FunctionSet", spec.ns["LADS"]), node_id(LADS_FUNCTION_SET_TYPE, spec.ns["LADS"]),
                )
            for key in self._nodes:
                if functional_unit(self.kind, key) == fu and fset is not None:
                    await fset.add_reference(self._nodes[key][0], ua.ObjectIds.Organizes, forward=True,
                                             bidirectional=False)

    async def _robotics(self, root: Any, values: dict[str, Any], rob: int, nss: tuple[int, ...]) -> None:
        """OPC 40010: MotionDevices/<ARM>/Axes/<joint> (AxisType: ParameterSet.ActualPosition,
        ActualSpeed) and SafetyStates/<ARM>_Safety (EmergencyStop, ProtectiveStop, OperationalMode)
        written from the arm's real state in :meth:`publish`."""
        dev = self.device_id
        mds = await child(root, ["MotionDevices"], nss)
        sss = await child(root, ["SafetyStates"], nss)
        if mds is None or sss is None:
            return
        md = await add_typed_object(self.server, mds, self._nid(f"{dev}/rob/md"), ua.QualifiedName(dev, rob),
                                    node_id(ROBOTICS_MOTION_DEVICE_TYPE, rob))
        await set_value(await child(md, ["Manufacturer"], nss), ua.LocalizedText("aseptic_cell emulator"))
        await set_value(await child(md, ["Model"], nss), ua.LocalizedText(MODEL[self.kind]))
        await set_value(await child(md, ["SerialNumber"], nss), f"EMU-{dev}")
        await set_value(await child(md, ["ProductCode"], nss), DEVICE_CLASS[self.kind])
        axes = await child(md, ["Axes"], nss)
        joints = sorted({k.split(".")[1] for k in values if k.startswith("joint.")})
        for j in joints:
            if axes is None:
                break
            ax = await add_typed_object(self.server, axes, self._nid(f"{dev}/rob/axis/{j}"), ua.QualifiedName(j, rob),
                                        node_id(ROBOTICS_AXIS_TYPE, rob))
            ps = await child(ax, ["ParameterSet"], nss)
            if ps is not None and await child(ps, ["ActualSpeed"], nss) is None:  # Optional in AxisType
                await ps.add_variable(self._nid(f"{dev}/rob/axis/{j}/ActualSpeed"),
                                      ua.QualifiedName("ActualSpeed", rob), 0.0)
            for std, key in (
                ("ActualPosition", f"joint.{j}.position_rad"),
                ("ActualSpeed", f"joint.{j}.velocity_rad_s"),
            ):
                n = await child(ax, ["ParameterSet", std], nss)
                if n is not None:
                    self._std.setdefault(key, []).append(n)
        ss = await add_typed_object(
            self.server, sss, self._nid(f"{dev}/rob/safety"), ua.QualifiedName(f"{dev}_Safety", rob),
            node_id(ROBOTICS_SAFETY_STATE_TYPE, rob),
        )
        for std in ("EmergencyStop", "ProtectiveStop", "OperationalMode"):
            n = await child(ss, ["ParameterSet", std], nss)
            if n is not None:
                self._std.setdefault(f"safety.{std}", []).append(n)

    async def _publish_standard(self, values: dict[str, Any]) -> None:
        std = getattr(self, "_std", None)
        if not std:
            return
        for key, nodes in std.items():
            if key.startswith("safety."):
                what = key.split(".", 1)[1]
                if what == "ProtectiveStop":
                    v: Any = bool(values.get("protective_stop"))
                elif what == "EmergencyStop":
                    v = "emergency" in str(values.get("protective_stop_reason") or "").lower()
                else:  # OperationalMode (OPC 40010 OperationalModeEnumeration: 3 = AUTOMATIC, 0 = OTHER)
                    v = 3 if str(values.get("mode") or "").lower() in ("auto", "automatic", "") else 0
            else:
                raw = values.get(key)
                if not isinstance(raw, (int, float)) or isinstance(raw, bool):
                    continue
                v = float(raw)
            if self._last.get(f"__std.{key}") == v:
                continue
            self._last[f"__std.{key}"] = v
            for n in nodes:
                await set_value(n, v)

    async def _set_sampling(self, node: Any) -> None:
        await node.write_attribute(
            ua.AttributeIds.MinimumSamplingInterval,
            ua.DataValue(ua.Variant(float(self.settings.min_sampling_interval_ms), ua.VariantType.Double)),
        )

    async def _organize(self, folder: Any, key: str) -> None:
        if key in self._nodes:
            await folder.add_reference(
                self._nodes[key][0], ua.ObjectIds.Organizes, forward=True, bidirectional=False
            )

    async def _companion_shape(self, root: Any, values: dict[str, Any]) -> None:
        dev = self.device_id
        if self.kind == "arm":
            mds = await self._folder(root, "MotionDevices", "MotionDevices")
            md = await self._object(mds, f"MotionDevices/{dev}", dev)
            axes = await self._folder(md, f"MotionDevices/{dev}/Axes", "Axes")
            joints = sorted({k.split(".")[1] for k in values if k.startswith("joint.")})
            for j in joints:
                ax = await self._object(axes, f"Axes/{j}", j)
                ps = await self._object(ax, f"Axes/{j}/ParameterSet", "ParameterSet")
                for name, key in (
                    ("ActualPosition", f"joint.{j}.position_rad"),
                    ("ActualSpeed", f"joint.{j}.velocity_rad_s"),
                ):
                    f = await self._folder(ps, f"Axes/{j}/ParameterSet/{name}", name)
                    await self._organize(f, key)
            ss = await self._folder(root, "SafetyStates", "SafetyStates")
            s = await self._object(ss, "SafetyStates/Safety", f"{dev}_Safety")
            ps = await self._object(s, "SafetyStates/Safety/ParameterSet", "ParameterSet")
            for name, key in (
                ("OperationalMode", "mode"),
                ("ProtectiveStop", "protective_stop"),
                ("EmergencyStop", "protective_stop_reason"),
            ):
                f = await self._folder(ps, f"SafetyStates/Safety/{name}", name)
                await self._organize(f, key)
            ctl = await self._folder(root, "Controllers", "Controllers")
            c = await self._object(ctl, "Controllers/Main", f"{dev}_Controller")
            for key in ("drives_enabled", "moving", "speed_class", "tcp_speed_m_s", "at_park", "at_decon"):
                await self._organize(c, key)
            return
        fus = await self._folder(root, "FunctionalUnitSet", "FunctionalUnitSet")
        made: dict[str, Any] = {}
        for key in self._nodes:
            if key.startswith("status."):
                continue
            fu = functional_unit(self.kind, key)
            if fu is None:
                continue
            if fu not in made:
                unit = await self._object(fus, f"FU/{fu}", fu)
                made[fu] = await self._folder(unit, f"FU/{fu}/FunctionSet", "FunctionSet")
            await self._organize(made[fu], key)
        if self.kind in ("vhp", "autoclave"):
            pm = await self._object(root, "ProgramManager", "ProgramManager")
            tset = await self._folder(pm, "ProgramManager/ProgramTemplateSet", "ProgramTemplateSet")
            cfg = self.world.cell.cfg
            templates = (
                [c.id for c in cfg.vhp_cycles.cycles]
                if self.kind == "vhp"
                else [p.id for p in cfg.autoclave_programs.programs]
            )
            for t in templates:
                await self._object(tset, f"ProgramManager/ProgramTemplateSet/{t}", t)
            ap = await self._object(pm, "ProgramManager/ActiveProgram", "ActiveProgram")
            for key in (
                "phase",
                "status.run_id",
                "status.recipe_id",
                "status.program_id",
                "status.phase_elapsed_s",
                "status.state",
                "cycle_active",
                "cycle_running",
            ):
                await self._organize(ap, key)

    async def _methods(self, root: Any) -> None:
        dev, ns = self.device_id, self.ns
        mf = await self._folder(root, "Methods", "Methods")
        for name in CATALOGUE[self.kind]:
            await mf.add_method(
                self._nid(nid_method(dev, name)),
                ua.QualifiedName(name, ns),
                self._make_handler(name),
                IN_ARGS,
                OUT_ARGS,
            )
        if self.settings.expose_fault_methods:
            emu = await self._object(root, "Emulator", "Emulator")
            await emu.add_method(
                self._nid(nid_fault(dev, "InjectFault")),
                ua.QualifiedName("InjectFault", ns),
                self._inject,
                [
                    _arg("Fault", ua.VariantType.String, "fault name, e.g. sensor:dp_pa"),
                    _arg("ParamsJson", ua.VariantType.String, 'JSON object, e.g. {"mode": "nan"}'),
                ],
                OUT_ARGS,
            )
            await emu.add_method(
                self._nid(nid_fault(dev, "ClearFault")),
                ua.QualifiedName("ClearFault", ns),
                self._clear,
                [_arg("Fault", ua.VariantType.String, "fault name ('' = all)")],
                OUT_ARGS,
            )
            # benchmark hook: wall ms from the last InjectFault (the hazard) to the next safe_state
            # command applied here, on this process's monotonic clock
            trip = await emu.add_variable(
                self._nid(nid_fault(dev, "LastTripLatencyMs")),
                ua.QualifiedName("LastTripLatencyMs", ns),
                ua.Variant(math.nan, ua.VariantType.Double),
            )
            self._trip = trip.nodeid

    # ------------------------------------------------------------------ methods
    def _session_user(self, roles: list[str], what: str) -> str | None:
        """The authenticated account id allowed to do ``what`` (secure mode), "" in mode none;
        None = refused."""
        if not self.secure:
            return ""
        from .server.security import session_account

        account = session_account()
        if account is None or account.role not in roles:
            log.warning("%s: %s by %s refused (roles allowed: %s)", self.device_id, what,
                        f"{account.id} ({account.role})" if account else "no session account", roles)
            return None
        return account.id

    def _make_handler(self, name: str) -> Any:
        async def handler(parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
            who = self._session_user(self.settings.security.command_roles, name)
            if who is None:
                return status_code(ua.StatusCodes.BadUserAccessDenied)
            vals = [a.Value if isinstance(a, ua.Variant) else a for a in args]
            args_json = vals[0] if vals else ""
            user = vals[1] if len(vals) > 1 else ""
            reason = vals[2] if len(vals) > 2 else ""
            if who and user and user != who:  # on behalf of: both are kept
                reason = f"{reason} [device session: {who}]".strip()
            return await self.world.command(self.device_id, name, args_json or "", user or who, reason or "")

        return handler

    async def _inject(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        if self._session_user(self.settings.security.fault_roles, "InjectFault") is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        vals = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        return await self.world.fault(
            self.device_id, "inject", vals[0] if vals else "", vals[1] if len(vals) > 1 else ""
        )

    async def _clear(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        if self._session_user(self.settings.security.fault_roles, "ClearFault") is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        vals = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        return await self.world.fault(self.device_id, "clear", vals[0] if vals else "", "")

    async def set_trip_latency(self, ms: float) -> None:
        if self.server is not None and self._trip is not None:
            await self.server.write_attribute_value(
                self._trip, ua.DataValue(ua.Variant(ms, ua.VariantType.Double))
            )

    # ------------------------------------------------------------------ values
    async def publish(self, values: dict[str, Any]) -> None:
        server = self.server
        if server is None:
            return
        now = self.world.cell.now()
        for key, value in values.items():
            entry = self._nodes.get(key)
            if entry is None or _same(self._last.get(key, object()), value):
                continue
            self._last[key] = value
            nodeid, declared, record = entry
            if record or is_record(value):
                v = ua.Variant(record_json(value), ua.VariantType.String)
            else:
                v = _variant(value, declared)
            await server.write_attribute_value(nodeid, ua.DataValue(v))
        executing = any(
            bool(values.get(k)) for k in ("cycle_active", "cycle_running", "moving", "leak_test.running")
        )
        state = "Executing" if executing else "NotExecuting"
        if self._item_state is not None and self._last.get("__item_state") != state:
            self._last["__item_state"] = state
            await server.write_attribute_value(
                self._item_state, ua.DataValue(ua.Variant(state, ua.VariantType.String))
            )
        await self._publish_standard(values)
        if self._lads is not None:
            await self._lads.update(values)
        if self._simtime is not None:
            await server.write_attribute_value(
                self._simtime, ua.DataValue(ua.Variant(float(now), ua.VariantType.Double))
            )


class EmulatedWorld:
    """The SimCell, its stepping, and the device servers over it."""

    def __init__(
        self,
        cell_cfg: Any,
        ocfg: OpcUaConfig,
        devices: list[str] | None = None,
        sim_speed: float | None = None,
        update_period_s: float | None = None,
    ) -> None:
        from ..sim.cell import SimCell

        self.cfg = cell_cfg
        self.ocfg = ocfg
        self.cell = SimCell(cell_cfg)
        self.speed = float(sim_speed if sim_speed is not None else ocfg.emulator.sim_speed)
        self.step_s = float(ocfg.emulator.step_s or cell_cfg.layout.sim.step_s)
        self.update_period_s = float(
            update_period_s if update_period_s is not None else ocfg.emulator.update_period_s
        )
        wanted = devices or [d for d in self.cell.models if d in ocfg.devices]
        unknown = [d for d in wanted if d not in self.cell.models or d not in ocfg.devices]
        if unknown:
            raise ValueError(
                f"unknown or unconfigured device(s) {unknown}; cell: {sorted(self.cell.models)}, "
                f"opcua.yaml: {sorted(ocfg.devices)}"
            )
        self.servers = {
            d: DeviceServer(self, d, self.cell.kinds[d], ocfg.devices[d], ocfg.emulator) for d in wanted
        }
        self.trip: dict[str, float | None] = {
            "hazard_t": None,
            "last_latency_ms": None,
        }  # benchmark hook (monotonic clock, system-wide)
        self._stop = asyncio.Event()

    def readings(self, device_id: str) -> dict[str, Any]:
        return model_readings(self.cell.models[device_id], self.cell.now())

    async def publish(self, device_id: str | None = None) -> None:
        for d, srv in self.servers.items():
            if device_id is None or d == device_id:
                await srv.publish(self.readings(d))

    async def command(
        self, device_id: str, name: str, args_json: str, user: str, reason: str
    ) -> list[ua.Variant]:
        from ..sim.common import CommandRefused, InvalidCommand

        accepted, code, why, payload = False, "INVALID", "", {}
        try:
            args = json.loads(args_json) if args_json.strip() else {}
            if not isinstance(args, dict):
                raise InvalidArguments("ArgsJson must be a JSON object")
            payload = self.cell.command(device_id, name, args)
            accepted, code = True, "OK"
        except CommandRefused as exc:
            code, why = exc.code, exc.reason
        except (InvalidArguments, InvalidCommand, ValueError, TypeError) as exc:
            code, why = "INVALID", str(exc)
        if name == "safe_state" and self.trip["hazard_t"] is not None:
            latency_ms = (time.monotonic() - self.trip["hazard_t"]) * 1000.0
            self.trip["last_latency_ms"] = latency_ms
            self.trip["hazard_t"] = None
            await self.servers[device_id].set_trip_latency(latency_ms)
        log.info("%s.%s(%s) by %r: %s %s", device_id, name, args_json, user, code, why)
        await self.publish(device_id)
        return [
            ua.Variant(accepted, ua.VariantType.Boolean),
            ua.Variant(code, ua.VariantType.String),
            ua.Variant(why, ua.VariantType.String),
            ua.Variant(record_json(payload or {}), ua.VariantType.String),
        ]

    async def fault(self, device_id: str, op: str, fault: str, params_json: str) -> list[ua.Variant]:
        accepted, code, why = True, "OK", ""
        try:
            params = json.loads(params_json) if params_json.strip() else {}
            if not isinstance(params, dict):
                raise ValueError("ParamsJson must be a JSON object")
            if op == "inject":
                if not fault:
                    raise ValueError("InjectFault needs a fault name")
                self.cell.inject_fault(device_id, fault, **params)
                self.trip["hazard_t"] = time.monotonic()
            else:
                self.cell.clear_fault(device_id, fault or None)
            log.warning("fault %s %s on %s %s", op, fault, device_id, params)
        except Exception as exc:  # noqa: BLE001 - a precise refusal, nothing changed
            accepted, code, why = False, "INVALID", str(exc)
        await self.publish(device_id)
        return [
            ua.Variant(accepted, ua.VariantType.Boolean),
            ua.Variant(code, ua.VariantType.String),
            ua.Variant(why, ua.VariantType.String),
            ua.Variant("{}", ua.VariantType.String),
        ]

    async def start(self) -> None:
        """Build every address space, then open every endpoint (no server answers half-built)."""
        for srv in self.servers.values():
            await srv.start()
        for srv in self.servers.values():
            await srv.listen()

    async def stop(self) -> None:
        self._stop.set()
        for srv in self.servers.values():
            await srv.stop()

    async def run(self) -> None:
        """Step the world at ``speed`` and publish every ``update_period_s`` until stopped."""
        wall0, sim0 = time.monotonic(), self.cell.now()
        next_pub = time.monotonic()
        while not self._stop.is_set():
            target = sim0 + (time.monotonic() - wall0) * self.speed
            budget_end = time.monotonic() + 0.5 * self.update_period_s
            while self.cell.now() + self.step_s <= target:
                self.cell.step(self.step_s)
                if time.monotonic() > budget_end:  # falling behind: re-anchor, never burst
                    wall0, sim0 = time.monotonic(), self.cell.now()
                    break
            now = time.monotonic()
            if now >= next_pub:
                await self.publish()
                next_pub = max(next_pub + self.update_period_s, now)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, next_pub - time.monotonic()))
            except TimeoutError:
                pass


async def serve(
    cell_cfg: Any,
    ocfg: OpcUaConfig,
    devices: list[str] | None = None,
    *,
    sim_speed: float | None = None,
    update_period_s: float | None = None,
    ready: Any = None,
) -> None:
    world = EmulatedWorld(cell_cfg, ocfg, devices, sim_speed=sim_speed, update_period_s=update_period_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, world._stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    await world.start()
    # the address spaces (companion NodeSets: ~2.7 M objects for 4 servers) live as long as the
    # process: keep them out of the cyclic GC (a full collection took ~5 s, and 18-50 s at exit)
    gc.freeze()
    try:
        msg = {
            "ready": True,
            "devices": {d: s.ep.endpoint for d, s in world.servers.items()},
            "sim_speed": world.speed,
        }
        print(json.dumps(msg), flush=True)
        if ready is not None:
            ready(world)
        await world.run()
    finally:
        await world.stop()


def main(argv: list[str] | None = None) -> int:
    from .cli import add_emulate_parser

    parser = argparse.ArgumentParser(prog="aseptic_cell.opcua.emulator")
    sub = parser.add_subparsers(dest="cmd")
    add_emulate_parser(sub)
    args = parser.parse_args(["emulate", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
