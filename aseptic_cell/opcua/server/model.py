"""The cell's OPC UA address space (Machinery [OPC40001-1], LADS [OPC30500-1], Robotics [OPC40010]), ROS-free.

Machinery-style at the top, in the cell namespace (string NodeIds ``<Machine>.<path>``)::

    Objects/Machines/ATMPCell01
      Identification        Manufacturer, Model, ProductCode, SerialNumber, ProductInstanceUri,
                            SoftwareRevision, Location
      MachineryItemState    NotAvailable | OutOfService | NotExecuting | Executing
      MachineryOperationMode  None | Maintenance | Setup | Processing
      Supervisor            CurrentState (PackML name), CurrentStateNumber (PackML index 0-16),
                            ISA88State, Connected, LastUpdate,
                            ActiveBatch{BatchId, RecipeId, RecipeVersion, UnitProcedure,
                            Operation, Phase, PhaseState, PhaseProgress, HeldReason}
                            Methods Start Hold Unhold Suspend Unsuspend Stop Abort Reset
                            (-> /cell/batch/command start hold restart pause resume stop abort
                            reset), ReloadConfiguration (engineer; this server's users/trust list)
      Batches               Count, Ids[], OpenZoneOwner, QueueLength,
                            <batch id>{BatchId, COI, DIN, ISA88State, ActivePhases, IncubatorSlot,
                            NextAction, TimeToVeinSlack_s, HeldReason, CoiStop, Impacted,
                            PhasesDone, PhasesTotal} (the patient batches, /cell/batches)
      Interlocks/<rule>[<instance>]  RuleId, Instance, Title, State, Severity, Reasons[]
      Alarms                ActiveCount, Flood, HighestSeverity, ActiveIds[],
                            Active/<alarm id>{Source, Priority, Severity, State, Message, Raised,
                                              Consequence, Response (alarms.yaml rationalisation)}
      Devices/<ISO1|VHP1|AC1|ARM1>  Node, LifecycleState, CommOk, Latched, Faults[], LastUpdate,
                            + a per-kind summary

Values come in as plain dicts (:mod:`.ros_bridge` converts the ROS messages) and only
changed values are written. Data older than ``stale_after_s`` is re-stamped with status
``UncertainLastUsableValue``; before the first message values are ``BadWaitingForInitialData``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from asyncua import Node, Server, ua

from aseptic_cell.alarms.models import SEVERITY_BANDS, database_rationale
from aseptic_cell.batch.states import PackMLState, PhaseState, to_packml
from aseptic_cell.opcua.companion import PACKML_BASE_OBJECT_TYPE, PackMLStateMachine, add_typed_object
from aseptic_cell.opcua.nodesets import CompanionSpecs
from aseptic_cell.opcua.uatyping import node_id, status_code
from aseptic_cell.results import CommandResult

log = logging.getLogger(__name__)

VT = ua.VariantType
PACKML_NUMBER: dict[str, int] = {s.value: i for i, s in enumerate(PackMLState)}
"""PackML state name -> number (PackML state enumeration [ISA-TR88.00.02] [TMC]:
Stopped=0 ... Unholding=16)."""

# (method name, /cell/batch/command command, permission action, description)
BATCH_METHODS: tuple[tuple[str, str, str, str], ...] = (
    ("Start", "start", "batch.start", "PackML Start = ISA-88 start"),
    ("Hold", "hold", "batch.hold", "PackML Hold = ISA-88 hold (safe, resumable)"),
    ("Unhold", "restart", "batch.restart", "PackML Unhold = ISA-88 restart after hold"),
    ("Suspend", "pause", "batch.pause", "PackML Suspend = ISA-88 pause"),
    ("Unsuspend", "resume", "batch.resume", "PackML Unsuspend = ISA-88 resume"),
    ("Stop", "stop", "batch.stop", "PackML Stop = ISA-88 stop (controlled end)"),
    ("Abort", "abort", "batch.abort", "PackML Abort = ISA-88 abort (fast end)"),
    ("Reset", "reset", "batch.reset", "PackML Reset = ISA-88 reset (Complete/Stopped/Aborted -> Idle)"),
)
RELOAD_ACTION = "config.change"

# Batches/<batch id> (issue 14 item 7): (browse name, /cell/batches field, type)
BATCH_FIELDS: tuple[tuple[str, str, VT], ...] = (
    ("COI", "coi", VT.String),
    ("DIN", "din", VT.String),
    ("ISA88State", "state", VT.String),
    ("ActivePhases", "active_phases", VT.String),
    ("IncubatorSlot", "slot", VT.String),
    ("NextAction", "next_action", VT.String),
    ("TimeToVeinSlack_s", "slack_s", VT.Double),
    ("HeldReason", "held_reason", VT.String),
    ("CoiStop", "coi_stop", VT.String),
    ("Impacted", "impacted", VT.Boolean),
    ("PhasesDone", "phases_done", VT.UInt32),
    ("PhasesTotal", "phases_total", VT.UInt32),
)

DEVICE_FIELDS: dict[str, tuple[tuple[str, str, VT], ...]] = {
    "isolator": (
        ("DifferentialPressure_Pa", "dp_pa", VT.Double),
        ("DpAlarm", "dp_alarm", VT.Boolean),
        ("HatchDoorAOpen", "hatch_door_a_open", VT.Boolean),
        ("HatchDoorBOpen", "hatch_door_b_open", VT.Boolean),
        ("Particles_0_5_per_m3", "particles_0_5_per_m3", VT.Double),
        ("Particles_5_0_per_m3", "particles_5_0_per_m3", VT.Double),
        ("ParticleAlert", "particle_alert", VT.Boolean),
        ("ParticleAction", "particle_action", VT.Boolean),
        ("Airflow_m_s", "airflow_m_s", VT.Double),
        ("Temperature_C", "temp_c", VT.Double),
        ("RH_pct", "rh_pct", VT.Double),
        ("H2O2_ppm", "h2o2_ppm", VT.Double),
        ("DeconStatus", "decon_status", VT.String),
        ("LeakTestResult", "leak_test_result", VT.String),
    ),
    "vhp": (
        ("CycleActive", "cycle_active", VT.Boolean),
        ("CycleId", "cycle_id", VT.String),
        ("RunId", "run_id", VT.String),
        ("Phase", "phase", VT.String),
        ("PhaseElapsed_s", "phase_elapsed_s", VT.Double),
        ("H2O2_ppm", "h2o2_ppm", VT.Double),
        ("H2O2_mg_L", "h2o2_mg_l", VT.Double),
        ("RH_pct", "rh_pct", VT.Double),
        ("Injected_g", "injected_g", VT.Double),
        ("LastResult", "last_result", VT.String),
    ),
    "autoclave": (
        ("CycleActive", "cycle_active", VT.Boolean),
        ("ProgramId", "program_id", VT.String),
        ("RunId", "run_id", VT.String),
        ("Phase", "phase", VT.String),
        ("ChamberT_C", "chamber_t_c", VT.Double),
        ("ChamberP_kPa", "chamber_p_kpa", VT.Double),
        ("LoadProbeT_C", "load_probe_t_c", VT.Double),
        ("F0_min", "f0_min", VT.Double),
        ("DoorLoadOpen", "door_load_open", VT.Boolean),
        ("DoorUnloadOpen", "door_unload_open", VT.Boolean),
        ("LastResult", "last_result", VT.String),
        ("SterileLoadAvailable", "sterile_load_available", VT.Boolean),
    ),
    "arm": (
        ("Mode", "mode", VT.String),
        ("SpeedClass", "speed_class", VT.String),
        ("Moving", "moving", VT.Boolean),
        ("DrivesEnabled", "drives_enabled", VT.Boolean),
        ("ProtectiveStop", "protective_stop", VT.Boolean),
        ("ProtectiveStopReason", "protective_stop_reason", VT.String),
        ("AtPark", "at_park", VT.Boolean),
        ("InDeconPose", "at_decon", VT.Boolean),
        ("TcpSpeed_m_s", "tcp_speed_m_s", VT.Double),
        ("CurrentMotion", "current_motion", VT.String),
    ),
}
COMMON_DEVICE_FIELDS: tuple[tuple[str, str, VT], ...] = (
    ("LifecycleState", "lifecycle_state", VT.String),
    ("CommOk", "comm_ok", VT.Boolean),
)
DEFAULT_DEVICE_IDS = {"isolator": "ISO1", "vhp": "VHP1", "autoclave": "AC1", "arm": "ARM1"}

_BAD_INITIAL = status_code(ua.StatusCodes.BadWaitingForInitialData)
_UNCERTAIN = status_code(ua.StatusCodes.UncertainLastUsableValue)
_GOOD = status_code(ua.StatusCodes.Good)
_EMPTY: dict[VT, Any] = {
    VT.String: "",
    VT.Double: 0.0,
    VT.Boolean: False,
    VT.UInt32: 0,
    VT.Int32: 0,
    VT.UInt16: 0,
    VT.DateTime: None,
}


def priority_of_severity(severity: int) -> str:
    """ISA-18.2 priority of an OPC UA severity (1-1000 [OPC10000-9]; this project's bands)."""
    for name, (lo, hi) in SEVERITY_BANDS.items():
        if lo <= severity <= hi:
            return name
    return "low" if severity < 1 else "emergency"


def clamp_severity(value: int) -> int:
    return max(1, min(1000, int(value)))


def instance_key(binding: Mapping[str, str] | str) -> str:
    if isinstance(binding, str):
        return binding
    return ",".join(f"{k}={v}" for k, v in sorted(binding.items()))


def packml_of(isa88: str, packml: str) -> str:
    """PackML state name: the supervisor's own if it sent one, else mapped from the ISA-88 state."""
    if packml in PACKML_NUMBER:
        return packml
    try:
        return to_packml(PhaseState[isa88.strip().upper()]).value
    except KeyError:
        return ""


def method_outputs(result: CommandResult) -> list[ua.Variant]:
    """A command's result as the output arguments of a cell method (Accepted, Code, Reason, State)."""
    return [
        ua.Variant(result.accepted, VT.Boolean),
        ua.Variant(str(result.code), VT.String),
        ua.Variant(result.reason, VT.String),
        ua.Variant(result.state, VT.String),
    ]


MethodHandler = Callable[[str, list[Any]], Awaitable[CommandResult | ua.StatusCode]]
"""``handler(method_name, input_values)`` -> reply, or a Bad status (access denied, bad args)."""


class _Var:
    __slots__ = ("nodeid", "vtype", "value", "status", "group")

    def __init__(self, nodeid: ua.NodeId, vtype: VT, group: str, is_array: bool = False) -> None:
        self.nodeid, self.vtype, self.group = nodeid, vtype, group
        self.value: Any = [] if is_array else _EMPTY.get(vtype)
        self.status = _BAD_INITIAL


class CellAddressSpace:
    """Builds the address space and applies snapshots. All methods run on the server's loop."""

    def __init__(
        self,
        server: Server,
        *,
        namespace_uri: str,
        machine_name: str,
        identification: Mapping[str, str],
        device_ids: Mapping[str, str],
        interlock_instances: Iterable[tuple[str, str, str, str]],
        method_args: Mapping[str, Sequence[str]],
        method_handler: MethodHandler,
        stale_after_s: float = 3.0,
        companion: CompanionSpecs | None = None,
    ) -> None:
        self.server = server
        self.companion = companion
        self.packml: PackMLStateMachine | None = None
        self.namespace_uri = namespace_uri
        self.machine_name = machine_name
        self.identification = dict(identification)
        self.device_ids = dict(device_ids)
        self.interlock_instances = list(interlock_instances)
        self.method_args = dict(method_args)
        self.handler = method_handler
        self.stale_after_s = stale_after_s
        self.ns = 0
        self.vars: dict[str, _Var] = {}
        self._last_update: dict[str, float] = {}
        self._interlock_nodes: dict[tuple[str, str], str] = {}
        self._batch_nodes: dict[str, str] = {}
        self._alarm_nodes: dict[str, Node] = {}
        self.conditions: AlarmConditions | None = None
        self.nodes: dict[str, Node] = {}

    # ------------------------------------------------------------------ ids
    def nid(self, path: str) -> ua.NodeId:
        return node_id(f"{self.machine_name}.{path}" if path else self.machine_name, self.ns)

    async def _obj(
        self,
        parent: Node,
        path: str,
        name: str,
        type_id: int = ua.ObjectIds.BaseObjectType,
        description: str = "",
    ) -> Node:
        node = await parent.add_object(self.nid(path), ua.QualifiedName(name, self.ns), objecttype=type_id)
        if description:
            await node.write_attribute(
                ua.AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(description), VT.LocalizedText)),
            )
        self.nodes[path] = node
        return node

    async def _var(
        self,
        parent: Node,
        path: str,
        name: str,
        vtype: VT,
        group: str,
        *,
        value: Any = None,
        array: bool = False,
        prop: bool = False,
    ) -> _Var:
        v = _Var(self.nid(path), vtype, group, array)
        if value is not None:
            v.value, v.status = value, _GOOD
        variant = ua.Variant(v.value, vtype, is_array=array) if array else ua.Variant(v.value, vtype)
        qn = ua.QualifiedName(name, self.ns)
        node = await (
            parent.add_property(v.nodeid, qn, variant, vtype)
            if prop
            else parent.add_variable(v.nodeid, qn, variant, vtype)
        )
        if array:
            await node.write_value_rank(1)
            # ArrayDimensions is an array of UInt32 (Part 3 5.6.2); asyncua annotates the argument as int
            await node.write_array_dimensions([0])  # type: ignore[arg-type]
        if v.status != _GOOD:
            await self.server.write_attribute_value(v.nodeid, ua.DataValue(variant, StatusCode=v.status))
        self.vars[path] = v
        self.nodes[path] = node
        return v

    # ------------------------------------------------------------------ build
    async def build(self) -> None:
        self.ns = await self.server.register_namespace(self.namespace_uri)
        objects = self.server.nodes.objects
        machines = await objects.add_folder(
            node_id("Machines", self.ns), ua.QualifiedName("Machines", self.ns)
        )
        cell = await self._obj(machines, "", self.machine_name, description="Robotic ATMP isolator cell")
        ident = await self._obj(cell, "Identification", "Identification")
        for key, value in self.identification.items():
            await self._var(ident, f"Identification.{key}", key, VT.String, "static", value=value, prop=True)
        await self._var(
            cell, "MachineryItemState", "MachineryItemState", VT.String, "supervisor", value="NotAvailable"
        )
        await self._var(
            cell, "MachineryOperationMode", "MachineryOperationMode", VT.String, "static", value="Processing"
        )

        sup = await self._obj(
            cell,
            "Supervisor",
            "Supervisor",
            description="PackML state machine of the cell (ISA-88 batch state underneath)",
        )
        await self._var(sup, "Supervisor.CurrentState", "CurrentState", VT.String, "supervisor")
        await self._var(sup, "Supervisor.CurrentStateNumber", "CurrentStateNumber", VT.Int32, "supervisor")
        await self._var(sup, "Supervisor.ISA88State", "ISA88State", VT.String, "supervisor")
        await self._var(sup, "Supervisor.Connected", "Connected", VT.Boolean, "static", value=False)
        await self._var(sup, "Supervisor.LastUpdate", "LastUpdate", VT.DateTime, "supervisor")
        batch = await self._obj(sup, "Supervisor.ActiveBatch", "ActiveBatch")
        for name, vt in (
            ("BatchId", VT.String),
            ("RecipeId", VT.String),
            ("RecipeVersion", VT.UInt32),
            ("UnitProcedure", VT.String),
            ("Operation", VT.String),
            ("Phase", VT.String),
            ("PhaseState", VT.String),
            ("PhaseProgress", VT.Double),
            ("HeldReason", VT.String),
        ):
            await self._var(batch, f"Supervisor.ActiveBatch.{name}", name, vt, "supervisor")
        for name, _cmd, action, desc in BATCH_METHODS:
            await self._method(sup, name, desc + f" (permission {action})")
        await self._method(
            sup,
            "ReloadConfiguration",
            "Re-read this server's users.yaml and client trust list (engineer only, e-signature; "
            f"permission {RELOAD_ACTION})",
        )

        if self.companion is not None:  # the standard PackML model (OPC 30050), issue 18
            pk = self.companion.ns["PackML"]
            obj = await add_typed_object(
                self.server, cell, self.nid("PackML"), ua.QualifiedName("PackML", self.ns),
                node_id(PACKML_BASE_OBJECT_TYPE, pk),
            )
            self.packml = PackMLStateMachine(self.server, obj, pk)
            await self.packml.init(self.machine_name)

        bt = await self._obj(
            cell, "Batches", "Batches",
            description="The patient batches in the cell (/cell/batches, issue 14): one object per batch id",
        )
        await self._var(bt, "Batches.Count", "Count", VT.UInt32, "batches")
        await self._var(bt, "Batches.Ids", "Ids", VT.String, "batches", array=True)
        await self._var(bt, "Batches.OpenZoneOwner", "OpenZoneOwner", VT.String, "batches")
        await self._var(bt, "Batches.QueueLength", "QueueLength", VT.UInt32, "batches")

        il = await self._obj(
            cell, "Interlocks", "Interlocks", description="Interlock rule instances (/cell/interlocks)"
        )
        for rule_id, inst, title, severity in self.interlock_instances:
            await self._add_interlock(il, rule_id, inst, title, severity)

        al = await self._obj(
            cell,
            "Alarms",
            "Alarms",
            description="Active ISA-18.2 alarms; severity bands emergency 900-1000, high 700-899, "
            "medium 400-699, low 1-399",
        )
        await self._var(al, "Alarms.ActiveCount", "ActiveCount", VT.UInt32, "alarms")
        await self._var(al, "Alarms.Flood", "Flood", VT.Boolean, "alarms")
        await self._var(al, "Alarms.HighestSeverity", "HighestSeverity", VT.UInt16, "alarms")
        await self._var(al, "Alarms.ActiveIds", "ActiveIds", VT.String, "alarms", array=True)
        await self._obj(al, "Alarms.Active", "Active")
        self.conditions = AlarmConditions(self.server, al)
        await self.conditions.init()

        dev = await self._obj(cell, "Devices", "Devices")
        for node_name, device_id in self.device_ids.items():
            d = await self._obj(dev, f"Devices.{device_id}", device_id)
            g = f"device:{node_name}"
            await self._var(
                d, f"Devices.{device_id}.Node", "Node", VT.String, "static", value=node_name, prop=True
            )
            for bname, _f, vt in COMMON_DEVICE_FIELDS:
                await self._var(d, f"Devices.{device_id}.{bname}", bname, vt, g)
            await self._var(d, f"Devices.{device_id}.Latched", "Latched", VT.Boolean, g)
            await self._var(d, f"Devices.{device_id}.Faults", "Faults", VT.String, g, array=True)
            await self._var(d, f"Devices.{device_id}.LastUpdate", "LastUpdate", VT.DateTime, g)
            for bname, _f, vt in DEVICE_FIELDS.get(node_name, ()):
                await self._var(d, f"Devices.{device_id}.{bname}", bname, vt, g)

    async def _method(self, parent: Node, name: str, description: str) -> None:
        args = [
            ua.Argument(
                Name=a,
                DataType=node_id(ua.ObjectIds.String),
                ValueRank=-1,
                Description=ua.LocalizedText(_ARG_DOC.get(a, a)),
            )
            for a in self.method_args.get(name, ("Reason",))
        ]
        outs = [
            ua.Argument(Name=n, DataType=node_id(t), ValueRank=-1, Description=ua.LocalizedText(d))
            for n, t, d in _OUTPUTS
        ]

        async def call(parent_id: ua.NodeId, *inputs: ua.Variant) -> Any:
            return await self._call(name, list(inputs))

        node = await parent.add_method(
            self.nid(f"Supervisor.{name}"), ua.QualifiedName(name, self.ns), call, args, outs
        )
        await node.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(description), VT.LocalizedText)),
        )
        self.nodes[f"Supervisor.{name}"] = node

    async def _call(self, name: str, inputs: list[ua.Variant]) -> Any:
        expected = self.method_args.get(name, ("Reason",))
        if len(inputs) < len(expected):
            return status_code(ua.StatusCodes.BadArgumentsMissing)
        if len(inputs) > len(expected):
            return status_code(ua.StatusCodes.BadTooManyArguments)
        values: list[str] = []
        for v in inputs:
            val = v.Value if isinstance(v, ua.Variant) else v
            if val is None:
                val = ""
            if not isinstance(val, str):
                return status_code(ua.StatusCodes.BadTypeMismatch)
            if len(val) > 1024:
                return status_code(ua.StatusCodes.BadInvalidArgument)
            values.append(val)
        try:
            result = await self.handler(name, values)
        except Exception:  # noqa: BLE001 - a failing handler is a refused call, not a crash
            log.exception("OPC UA method %s failed", name)
            return status_code(ua.StatusCodes.BadInternalError)
        return result if isinstance(result, ua.StatusCode) else method_outputs(result)

    async def _add_interlock(self, parent: Node, rule_id: str, inst: str, title: str, severity: str) -> str:
        name = f"{rule_id}[{inst}]" if inst else rule_id
        path = f"Interlocks.{name}"
        o = await self._obj(parent, path, name, description=title)
        await self._var(o, f"{path}.RuleId", "RuleId", VT.String, "static", value=rule_id, prop=True)
        await self._var(o, f"{path}.Instance", "Instance", VT.String, "static", value=inst, prop=True)
        await self._var(o, f"{path}.Title", "Title", VT.String, "static", value=title, prop=True)
        await self._var(o, f"{path}.Severity", "Severity", VT.String, "interlocks", value=severity)
        await self._var(o, f"{path}.State", "State", VT.String, "interlocks")
        await self._var(o, f"{path}.Reasons", "Reasons", VT.String, "interlocks", array=True)
        self._interlock_nodes[(rule_id, inst)] = path
        return path

    # ------------------------------------------------------------------ updates
    async def _set(self, path: str, value: Any, now: dt.datetime | None = None) -> None:
        v = self.vars[path]
        if v.vtype is VT.Double and value is not None:
            value = float(value)
        elif v.vtype in (VT.UInt32, VT.Int32, VT.UInt16) and value is not None:
            value = int(value)
        elif v.vtype is VT.String and value is None:
            value = ""
        if isinstance(v.value, list) or isinstance(value, (list, tuple)):
            value = [str(x) for x in (value or ())]
        if value == v.value and v.status == _GOOD:
            return
        v.value, v.status = value, _GOOD
        variant = ua.Variant(value, v.vtype, is_array=isinstance(value, list))
        await self.server.write_attribute_value(
            v.nodeid,
            # asyncua annotates timestamps as its ua.DateTime marker subclass; it takes any datetime
            ua.DataValue(variant, StatusCode=_GOOD, SourceTimestamp=now, ServerTimestamp=now),  # type: ignore[arg-type]
        )

    def _touch(self, group: str) -> None:
        self._last_update[group] = time.monotonic()

    async def apply_batch_status(self, s: Mapping[str, Any]) -> None:
        """``s``: BatchStatus fields (batch_id, recipe_id, recipe_version, state, packml_state, ...)."""
        now = dt.datetime.now(dt.UTC)
        isa88 = str(s.get("state", ""))
        packml = packml_of(isa88, str(s.get("packml_state", "")))
        await self._set("Supervisor.ISA88State", isa88, now)
        await self._set("Supervisor.CurrentState", packml, now)
        await self._set("Supervisor.CurrentStateNumber", PACKML_NUMBER.get(packml, -1), now)
        if self.packml is not None:
            await self.packml.set_state(packml)
        for name, key in (
            ("BatchId", "batch_id"),
            ("RecipeId", "recipe_id"),
            ("RecipeVersion", "recipe_version"),
            ("UnitProcedure", "unit_procedure"),
            ("Operation", "operation"),
            ("Phase", "phase"),
            ("PhaseState", "phase_state"),
            ("PhaseProgress", "phase_progress"),
            ("HeldReason", "held_reason"),
        ):
            await self._set(f"Supervisor.ActiveBatch.{name}", s.get(key), now)
        executing = packml in ("Execute", "Starting", "Completing", "Unholding", "Unsuspending")
        await self._set("MachineryItemState", "Executing" if executing else "NotExecuting", now)
        await self._set("Supervisor.LastUpdate", now, now)
        self._touch("supervisor")

    async def _add_batch(self, batch_id: str) -> str:
        path = f"Batches.{batch_id}"
        o = await self._obj(self.nodes["Batches"], path, batch_id, description=f"patient batch {batch_id}")
        await self._var(o, f"{path}.BatchId", "BatchId", VT.String, "static", value=batch_id, prop=True)
        for name, _key, vt in BATCH_FIELDS:
            await self._var(o, f"{path}.{name}", name, vt, "batches")
        self._batch_nodes[batch_id] = path
        return path

    async def apply_batches(self, view: Mapping[str, Any]) -> None:
        """``view``: the supervisor's ``/cell/batches`` JSON (:mod:`aseptic_cell.supervisor.batch_view`).
        A batch that left the view keeps its object with its last values (its record is the truth)."""
        now = dt.datetime.now(dt.UTC)
        rows = [b for b in view.get("batches") or () if isinstance(b, Mapping) and b.get("batch_id")]
        for b in rows:
            bid = str(b["batch_id"])
            path = self._batch_nodes.get(bid)
            if path is None:
                if len(self._batch_nodes) >= 500:
                    continue
                path = await self._add_batch(bid)
            for name, key, _vt in BATCH_FIELDS:
                value = b.get(key)
                if key == "active_phases":
                    value = ", ".join(str(x) for x in value or ())
                elif key == "slack_s":
                    value = float("nan") if value is None else value
                await self._set(f"{path}.{name}", value, now)
        await self._set("Batches.Count", len(rows), now)
        await self._set("Batches.Ids", [str(b["batch_id"]) for b in rows], now)
        await self._set("Batches.OpenZoneOwner", view.get("zone_owner") or "", now)
        await self._set("Batches.QueueLength", len(view.get("queue") or ()), now)
        self._touch("batches")

    async def apply_interlocks(self, rules: Sequence[Mapping[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        parent = self.nodes["Interlocks"]
        for r in rules:
            key = (str(r.get("rule_id", "")), instance_key(r.get("instance", "")))
            path = self._interlock_nodes.get(key)
            if path is None:
                if not key[0] or len(self._interlock_nodes) >= 2000:
                    continue
                path = await self._add_interlock(
                    parent, key[0], key[1], str(r.get("title", "")), str(r.get("severity", ""))
                )
            await self._set(f"{path}.State", str(r.get("state", "")), now)
            await self._set(f"{path}.Severity", str(r.get("severity", "")), now)
            await self._set(f"{path}.Reasons", list(r.get("reasons", ())), now)
        self._touch("interlocks")

    async def apply_alarms(self, snapshot: Mapping[str, Any]) -> None:
        """``snapshot``: {"flood": bool, "alarms": [{alarm_id, source, priority, state, message, raised}]}."""
        now = dt.datetime.now(dt.UTC)
        # shelved alarms are published for the HMI's shelved list; they are not active (ISA-18.2)
        alarms = {str(a.get("alarm_id", "")): a for a in snapshot.get("alarms", ())
                  if a.get("alarm_id") and a.get("state") != "SHELVED"}
        if len(alarms) > 500:
            alarms = dict(sorted(alarms.items(), key=lambda kv: -int(kv[1].get("priority", 0)))[:500])
        parent = self.nodes["Alarms.Active"]
        for gone in [k for k in self._alarm_nodes if k not in alarms]:
            node = self._alarm_nodes.pop(gone)
            try:
                await self.server.delete_nodes([node], recursive=True)
            except Exception:  # noqa: BLE001
                log.exception("could not delete alarm node %s", gone)
            for p in [p for p in self.vars if p.startswith(f"Alarms.Active.{gone}.")]:
                del self.vars[p]
        for aid, a in alarms.items():
            base = f"Alarms.Active.{aid}"
            if aid not in self._alarm_nodes:
                o = await self._obj(parent, base, aid)
                self._alarm_nodes[aid] = o
                for name, vt in (
                    ("Source", VT.String),
                    ("Priority", VT.String),
                    ("Severity", VT.UInt16),
                    ("State", VT.String),
                    ("Message", VT.String),
                    ("Raised", VT.DateTime),
                    ("Consequence", VT.String),
                    ("Response", VT.String),
                ):
                    await self._var(o, f"{base}.{name}", name, vt, "alarms")
            sev = clamp_severity(int(a.get("priority", 1) or 1))
            await self._set(f"{base}.Source", a.get("source", ""), now)
            await self._set(f"{base}.Severity", sev, now)
            await self._set(f"{base}.Priority", priority_of_severity(sev), now)
            await self._set(f"{base}.State", a.get("state", ""), now)
            await self._set(f"{base}.Message", a.get("message", ""), now)
            raised = a.get("raised")
            await self._set(f"{base}.Raised", raised if isinstance(raised, dt.datetime) else now, now)
            consequence, response = database_rationale(aid)  # ISA-18.2: what happens, what to do
            await self._set(f"{base}.Consequence", str(a.get("consequence") or consequence), now)
            await self._set(f"{base}.Response", str(a.get("response") or response), now)
        if self.conditions is not None:  # OPC UA Alarms & Conditions events (issue 18)
            await self.conditions.apply(
                {str(a.get("alarm_id", "")): a for a in snapshot.get("alarms", ()) if a.get("alarm_id")},
                {aid: self.nid(f"Alarms.Active.{aid}") for aid in alarms})
        sevs = [clamp_severity(int(a.get("priority", 1) or 1)) for a in alarms.values()]
        if self.packml is not None:  # PackML Admin: ISA-18.2 low priority = a PackML Warning, others Alarms
            listed: dict[bool, list[tuple[int, str, str, int, Any, bool]]] = {True: [], False: []}
            for aid, a in sorted(alarms.items()):
                sev = clamp_severity(int(a.get("priority", 1) or 1))
                raised = a.get("raised")
                warn = priority_of_severity(sev) == "low"
                listed[warn].append((len(listed[warn]) + 1, aid, str(a.get("message", "")), sev,
                                     raised if isinstance(raised, dt.datetime) else None,
                                     str(a.get("state", "")) in AlarmConditions.ACKED))
            await self.packml.set_alarms(listed[False], listed[True])
        await self._set("Alarms.ActiveCount", len(alarms), now)
        await self._set("Alarms.Flood", bool(snapshot.get("flood", False)), now)
        await self._set("Alarms.HighestSeverity", max(sevs, default=0), now)
        await self._set("Alarms.ActiveIds", sorted(alarms), now)
        self._touch("alarms")

    async def apply_device(self, node_name: str, s: Mapping[str, Any]) -> None:
        device_id = self.device_ids.get(node_name)
        if device_id is None:
            return
        now = dt.datetime.now(dt.UTC)
        base = f"Devices.{device_id}"
        for bname, field, _vt in COMMON_DEVICE_FIELDS + DEVICE_FIELDS.get(node_name, ()):
            if field in s:
                await self._set(f"{base}.{bname}", s[field], now)
        await self._set(f"{base}.Latched", "latched" in str(s.get("lifecycle_state", "")), now)
        await self._set(f"{base}.Faults", list(s.get("faults", ())), now)
        await self._set(f"{base}.LastUpdate", now, now)
        self._touch(f"device:{node_name}")

    async def set_connected(self, connected: bool) -> None:
        await self._set("Supervisor.Connected", connected)

    async def mark_stale(self) -> list[str]:
        """Re-stamp groups without fresh data as UncertainLastUsableValue; returns the stale groups."""
        now_m = time.monotonic()
        stale = [g for g, t in self._last_update.items() if now_m - t > self.stale_after_s]
        if not stale:
            return []
        now = dt.datetime.now(dt.UTC)
        for v in self.vars.values():
            if v.group in stale and v.status == _GOOD:
                v.status = _UNCERTAIN
                variant = ua.Variant(v.value, v.vtype, is_array=isinstance(v.value, list))
                await self.server.write_attribute_value(
                    v.nodeid,
                    ua.DataValue(  # timestamps: any datetime (see _set)
                        variant, StatusCode=_UNCERTAIN, SourceTimestamp=now, ServerTimestamp=now  # type: ignore[arg-type]
                    ),
                )
        for g in stale:
            self._last_update.pop(g, None)
        if "supervisor" in stale:
            await self._set("MachineryItemState", "NotAvailable")
        return stale


_ARG_DOC = {
    "Reason": "free-text reason recorded with the command",
    "Password": "the session user's password, re-entered as the e-signature (21 CFR Part 11 §11.200)",
}
_OUTPUTS = (
    ("Accepted", ua.ObjectIds.Boolean, "true when the supervisor accepted the command"),
    ("Code", ua.ObjectIds.String, "result code (OK, REFUSED, ILLEGAL_STATE, TIMEOUT, UNAVAILABLE, ...)"),
    ("Reason", ua.ObjectIds.String, "why it was refused, or what happened"),
    ("State", ua.ObjectIds.String, "ISA-88 state after the command"),
)


class AlarmConditions:
    """The ISA-18.2 alarms as OPC UA Alarms & Conditions (Part 9) events (issue 18).

    Every change of an alarm's state (raised, acknowledged, returned to normal, shelved, cleared) is
    an ``AlarmConditionType`` event from the Server object, notified by the cell's ``Alarms`` object:
    ``ConditionId`` = the alarm's ``Alarms/Active/<id>`` object, ``ConditionName`` = the alarm id,
    ``Severity`` from the ISA-18.2 priority (the same bands as the variables), ``ActiveState`` /
    ``AckedState`` (with ``Id``) from the alarm manager's state, ``Retain`` while it is annunciated.
    ``Acknowledge`` (AcknowledgeableConditionType, ns=0;i=9111) called on the ConditionId with an
    EventId of that condition goes through the supervisor's acknowledge path (the app's handler).
    """

    ACTIVE = ("UNACK", "ACKED", "LATCHED", "ACTIVE")  # (ACTIVE: a node's own alarm, e.g. SUPERVISOR LOST)
    ACKED = ("ACKED", "LATCHED", "NORMAL", "SHELVED", "OUT_OF_SERVICE")

    def __init__(self, server: Any, alarms_obj: Node) -> None:
        self.server, self.alarms_obj = server, alarms_obj
        self.gen: Any = None
        self.last: dict[str, str] = {}  # alarm id -> state notified last
        self.event_ids: dict[str, list[bytes]] = {}  # alarm id -> its recent EventIds
        self.by_node: dict[ua.NodeId, str] = {}  # ConditionId -> alarm id
        self.node_of: dict[str, ua.NodeId] = {}

    async def init(self) -> None:
        self.gen = await self.server.get_event_generator(ua.ObjectIds.AlarmConditionType, ua.ObjectIds.Server)
        await self.alarms_obj.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        server_obj = self.server.get_node(ua.ObjectIds.Server)
        await server_obj.add_reference(self.alarms_obj.nodeid, ua.ObjectIds.HasNotifier, forward=True,
                                       bidirectional=True)

    def alarm_of(self, condition: ua.NodeId, event_id: bytes | None) -> str | None | ua.StatusCode:
        """The alarm id of ``condition`` if ``event_id`` is one of its events; a Bad status otherwise."""
        aid = self.by_node.get(condition)
        if aid is None:
            return status_code(ua.StatusCodes.BadNodeIdUnknown)
        if event_id not in self.event_ids.get(aid, []):
            return status_code(ua.StatusCodes.BadEventIdUnknown)
        return aid

    async def apply(self, alarms: Mapping[str, Mapping[str, Any]], nodes: Mapping[str, ua.NodeId]) -> None:
        for aid, a in alarms.items():
            node = nodes.get(aid) or self.node_of.get(aid)
            state = str(a.get("state", ""))
            if node is None or self.last.get(aid) == state:
                continue
            await self._event(aid, a, state, node)
        for aid in [k for k in self.last if k not in alarms]:  # cleared: the last event, Retain false
            await self._event(aid, {"source": "", "message": "cleared", "priority": 1}, "NORMAL",
                              self.node_of[aid])
            del self.last[aid]

    async def _event(self, aid: str, a: Mapping[str, Any], state: str, node: ua.NodeId) -> None:
        ev = self.gen.event
        active, acked = state in self.ACTIVE, state in self.ACKED
        ev.NodeId = node  # ConditionId
        ev.SourceNode = node
        ev.SourceName = str(a.get("source", "") or aid)
        ev.ConditionName = aid
        ev.Severity = clamp_severity(int(a.get("priority", 1) or 1))
        ev.Message = ua.LocalizedText(str(a.get("message", "") or aid))
        ev.Retain = state not in ("NORMAL",)
        ev.BranchId = ua.NodeId()
        for name, flag, true_text, false_text in (
            ("EnabledState", state != "OUT_OF_SERVICE", "Enabled", "Disabled"),
            ("ActiveState", active, "Active", "Inactive"),
            ("AckedState", acked, "Acknowledged", "Unacknowledged"),
        ):
            setattr(ev, name, ua.LocalizedText(true_text if flag else false_text))
            setattr(ev, f"{name}/Id", flag)
            # (TransitionTime stays empty: asyncua 2.1 types it UtcTime by NodeId and cannot encode it)
        ev.SuppressedOrShelved = state == "SHELVED"
        await self.gen.trigger(message=str(a.get("message", "") or aid))
        eid = ev.EventId.Value if isinstance(ev.EventId, ua.Variant) else ev.EventId
        ids = self.event_ids.setdefault(aid, [])
        ids.append(bytes(eid))
        del ids[:-20]
        self.last[aid] = state
        self.by_node[node] = aid
        self.node_of[aid] = node
