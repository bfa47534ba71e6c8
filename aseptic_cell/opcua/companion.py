"""Instances of the companion-specification types (issue 18) in our asyncua servers.

* :func:`add_typed_object` instantiates a standard ObjectType (asyncua copies its children) and
  removes the ``<...Identifier>`` placeholder children asyncua copies too (OptionalPlaceholder /
  MandatoryPlaceholder rules describe *where* instances may go, they are not instances).
* :class:`PackMLStateMachine` drives an instance of ``PackMLBaseObjectType`` (OPC 30050 [PackML]):
  ``BaseStateMachine`` (PackMLBaseStateMachineType) with its ``MachineState`` and ``ExecuteState``
  sub-machines, the state ``Id`` of each pointing at the type's state object, and the Status
  object's ``UnitModeCurrent``.
* :func:`child` / :func:`set_value` resolve and write children by browse path.

The types come from :mod:`.nodesets` (``CompanionSpecs.ns`` gives the namespace indices).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asyncua import Node, ua
from asyncua.ua.uatypes import FILETIME_EPOCH_AS_UTC_DATETIME

from .uatyping import node_id

log = logging.getLogger(__name__)

# type ids in their own namespaces (from the official NodeSets)
PACKML_BASE_OBJECT_TYPE = 6  # PackMLBaseObjectType
PACKML_EXECUTE_SM_TYPE = 1  # PackMLExecuteStateMachineType
PACKML_MACHINE_SM_TYPE = 2  # PackMLMachineStateMachineType
PACKML_BASE_SM_TYPE = 3  # PackMLBaseStateMachineType
PACKML_ALARM_DATA_TYPE = 15  # PackMLAlarmDataType (ID, Value, Message, Category, DateTime, AckDateTime, Trigger)
LADS_DEVICE_TYPE = 1002  # LADSDeviceType
LADS_FUNCTIONAL_UNIT_TYPE = 1003  # FunctionalUnitType
LADS_FUNCTION_SET_TYPE = 1026  # FunctionSetType (FunctionalUnitType.FunctionSet, Optional)
ROBOTICS_MOTION_DEVICE_SYSTEM_TYPE = 1002  # MotionDeviceSystemType
ROBOTICS_MOTION_DEVICE_TYPE = 1004  # MotionDeviceType
ROBOTICS_AXIS_TYPE = 16601  # AxisType
ROBOTICS_SAFETY_STATE_TYPE = 1013  # SafetyStateType
ROBOTICS_CONTROLLER_TYPE = 1003  # ControllerType

# PackML unit modes (PackML ProdDefinedMode numbering): 1 = Production
UNIT_MODE_PRODUCTION = 1


async def add_typed_object(
    server: Any, parent: Node, nodeid: ua.NodeId, name: ua.QualifiedName, type_id: ua.NodeId
) -> Node:
    """An instance of ``type_id`` with its Mandatory children only (asyncua copies Optional ones and
    placeholders by default). MandatoryPlaceholder children (``<...Identifier>``) are removed
    straight from the address space: they mark where instances go (deleting them through the
    DeleteNodes service scans the whole address space once per node: ~0.5 s each)."""
    from asyncua.common.instantiate_util import instantiate

    made = await instantiate(parent, server.get_node(type_id), nodeid=nodeid, bname=name,
                             instantiate_optional=False)
    added: list[ua.NodeId] = [n.nodeid if isinstance(n, Node) else n for n in made]
    nodes = server.iserver.aspace._nodes  # noqa: SLF001 - see the docstring
    mine = set(added)

    def name_of(nid: ua.NodeId) -> str:
        data = nodes.get(nid)
        dv = data.attributes.get(ua.AttributeIds.BrowseName) if data is not None else None
        return str(dv.value.Value.Value.Name) if dv is not None and dv.value is not None else ""

    drop: set[ua.NodeId] = set()
    todo = [nid for nid in added if name_of(nid).startswith("<")]
    while todo:
        nid = todo.pop()
        if nid in drop:
            continue
        drop.add(nid)
        for ref in nodes[nid].references:
            if ref.IsForward and ref.NodeId in mine and ref.ReferenceTypeId != node_id(ua.ObjectIds.HasTypeDefinition):
                todo.append(ref.NodeId)
    for nid in drop:
        nodes.pop(nid, None)
    if drop:
        for nid in [*mine - drop, parent.nodeid]:
            data = nodes.get(nid)
            if data is not None:
                data.references = [r for r in data.references if r.NodeId not in drop]
    return server.get_node(added[0])


async def child(node: Node, path: Sequence[str], ns: Sequence[int]) -> Node | None:
    """The node at ``path`` below ``node``; each element is tried in each namespace of ``ns``."""
    cur = node
    for name in path:
        found = None
        for ch in await cur.get_children():
            bn = await ch.read_browse_name()
            if bn.Name == name and bn.NamespaceIndex in ns:
                found = ch
                break
        if found is None:
            return None
        cur = found
    return cur


async def set_value(node: Node | None, value: Any, vtype: ua.VariantType | None = None) -> bool:
    """Write ``value`` to a variable created by the type (its DataType decides the variant type when
    ``vtype`` is None). False if the node is missing or the write was refused."""
    if node is None:
        return False
    try:
        if vtype is None:
            vtype = await node.read_data_type_as_variant_type()
        await node.write_value(ua.DataValue(ua.Variant(value, vtype)))
        return True
    except Exception:  # noqa: BLE001 - a mismatch leaves the standard node empty, logged
        log.debug("could not write %r to %s", value, node.nodeid, exc_info=True)
        return False


class PackMLStateMachine:
    """The PackML instance of the cell: states mapped onto the three nested state machines."""

    BASE = ("Aborting", "Aborted")
    MACHINE = ("Stopped", "Stopping", "Clearing")

    def __init__(self, server: Any, obj: Node, pk_ns: int) -> None:  # obj: a PackMLBaseObjectType instance
        self.server, self.obj, self.pk = server, obj, pk_ns
        self.state_ids: dict[str, ua.NodeId] = {}
        self.cur: dict[str, tuple[Node | None, Node | None]] = {}
        self.status: dict[str, Node | None] = {}
        self.admin: dict[str, Node | None] = {}

    # PackMLBaseObjectType's optional methods: the cell takes its commands through the role-checked,
    # recorded Supervisor methods instead, so these are not offered (no handler = no node)
    UNSERVED_METHODS = ("SetUnitMode", "SetMachSpeed", "SetProduct", "SetParameter", "RemoteCommand", "SetInterlock")

    async def init(self, tag_id: str) -> None:
        pk = self.pk
        for ch in await self.obj.get_children():
            if await ch.read_node_class() == ua.NodeClass.Method and (
                (await ch.read_browse_name()).Name in self.UNSERVED_METHODS
            ):
                await ch.delete(recursive=True)
        for type_i in (PACKML_EXECUTE_SM_TYPE, PACKML_MACHINE_SM_TYPE, PACKML_BASE_SM_TYPE):
            for ch in await self.server.get_node(node_id(type_i, pk)).get_children():
                state_types = (node_id(ua.ObjectIds.StateType), node_id(ua.ObjectIds.InitialStateType))
                if await ch.read_type_definition() in state_types:
                    self.state_ids[(await ch.read_browse_name()).Name] = ch.nodeid
        nss = (0, pk)
        for key, path in (
            ("base", ["BaseStateMachine"]),
            ("machine", ["BaseStateMachine", "MachineState"]),
            ("execute", ["BaseStateMachine", "MachineState", "ExecuteState"]),
        ):
            sm = await child(self.obj, path, nss)
            cs = await child(sm, ["CurrentState"], nss) if sm is not None else None
            cid = await child(cs, ["Id"], nss) if cs is not None else None
            self.cur[key] = (cs, cid)
        for name in ("UnitModeCurrent", "MachSpeed", "CurMachSpeed", "EquipmentBlocked", "EquipmentStarved"):
            self.status[name] = await child(self.obj, ["Status", name], nss)
        await set_value(await child(self.obj, ["TagID"], nss), tag_id, ua.VariantType.String)
        await set_value(await child(self.obj, ["PackMLVersion"], nss), "OPC 30050 (PackML) 1.01",
                        ua.VariantType.String)
        await set_value(self.status["UnitModeCurrent"], UNIT_MODE_PRODUCTION, ua.VariantType.Int32)
        await set_value(self.status["EquipmentBlocked"], False, ua.VariantType.Boolean)
        await set_value(self.status["EquipmentStarved"], False, ua.VariantType.Boolean)
        admin = await child(self.obj, ["Admin"], nss)
        if admin is not None:  # Optional in PackMLAdminObjectType: the alarm and warning lists (issue 18)
            for name, dtype, rank, empty in (
                ("Alarm", node_id(PACKML_ALARM_DATA_TYPE, pk), 1, []),
                ("AlarmExtent", node_id(ua.ObjectIds.Int32), -1, 0),
                ("Warning", node_id(PACKML_ALARM_DATA_TYPE, pk), 1, []),
                ("WarningExtent", node_id(ua.ObjectIds.Int32), -1, 0),
            ):
                node = await child(admin, [name], nss)
                if node is None:
                    vt = ua.VariantType.ExtensionObject if rank == 1 else ua.VariantType.Int32
                    node = await admin.add_variable(
                        node_id(f"{self.obj.nodeid.Identifier!s}.Admin.{name}", self.obj.nodeid.NamespaceIndex),
                        ua.QualifiedName(name, pk), ua.Variant(empty, vt), datatype=dtype)
                    if rank == 1:
                        await node.write_value_rank(1)
                        await node.write_attribute(  # (asyncua annotates write_array_dimensions int)
                            ua.AttributeIds.ArrayDimensions,
                            ua.DataValue(ua.Variant([0], ua.VariantType.UInt32)))
                self.admin[name] = node
        missing = [k for k, (cs, _i) in self.cur.items() if cs is None]
        if missing or len(self.state_ids) < 17:
            log.warning("PackML instance incomplete: state machines %s missing, %d states known",
                        missing, len(self.state_ids))

    async def set_alarms(self, alarms: Sequence[Any], warnings: Sequence[Any]) -> None:
        """PackML Admin ``Alarm`` / ``Warning`` (PackMLAlarmDataType[]) and their ``...Extent`` counts.
        Items: (number, alarm id, message, severity, raised datetime | None, acknowledged). ``ID`` is
        the alarm's number in this list (PackML IDs are Int32; the ISA-18.2 id is the Message's prefix),
        ``Category`` the OPC UA severity, ``Trigger`` true (every listed alarm is active); ``AckDateTime``
        is left empty (the alarm snapshot the cell server gets carries no acknowledge time)."""
        cls = getattr(ua, "PackMLAlarmDataType", None)
        for name, items in (("Alarm", alarms), ("Warning", warnings)):
            node, extent = self.admin.get(name), self.admin.get(f"{name}Extent")
            if cls is not None and node is not None:
                null = FILETIME_EPOCH_AS_UTC_DATETIME  # the OPC UA "no DateTime" (1601-01-01)
                values = [cls(ID=n, Value=0, Message=f"{aid}: {msg}", Category=sev, DateTime=raised or null,
                              AckDateTime=null, Trigger=True) for n, aid, msg, sev, raised, _ack in items]
                await self.server.write_attribute_value(
                    node.nodeid, ua.DataValue(ua.Variant(values, ua.VariantType.ExtensionObject)))
            if extent is not None:
                await self.server.write_attribute_value(
                    extent.nodeid, ua.DataValue(ua.Variant(len(items), ua.VariantType.Int32)))

    async def _write(self, key: str, state: str | None) -> None:
        cs, cid = self.cur.get(key, (None, None))
        if cs is None:
            return
        text = ua.LocalizedText(state) if state else ua.LocalizedText()
        await self.server.write_attribute_value(cs.nodeid, ua.DataValue(ua.Variant(text, ua.VariantType.LocalizedText)))
        if cid is not None:
            sid = self.state_ids.get(state or "", ua.NodeId())
            await self.server.write_attribute_value(cid.nodeid, ua.DataValue(ua.Variant(sid, ua.VariantType.NodeId)))

    async def set_state(self, packml: str) -> None:
        """``packml``: a PackML state name (Stopped ... Unholding); unknown names clear the machines."""
        base: str | None
        machine: str | None
        execute: str | None
        if packml in self.BASE:
            base, machine, execute = packml, None, None
        elif packml in self.MACHINE:
            base, machine, execute = "Cleared", packml, None
        elif packml in self.state_ids:
            base, machine, execute = "Cleared", "Running", packml
        else:
            base, machine, execute = None, None, None
        await self._write("base", base)
        await self._write("machine", machine)
        await self._write("execute", execute)
