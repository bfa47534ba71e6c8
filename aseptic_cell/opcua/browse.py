"""Resolve a device's nodes from a :class:`.config.BrowseLayout` (issue 18 item 6): the bridge
finds the device object, its clock, its readings and its command methods by browse paths
(TranslateBrowsePathsToNodeIds and Browse, with the namespace indices read from the server's
NamespaceArray), never by NodeIds. With the ``lads`` layout the readings are the variables and
functions in the standard LADS model: ``LADSDeviceType`` -> ``FunctionalUnitSet`` -> every
functional unit -> ``FunctionSet``; a function object (LADS sensor / control function) gives its
``SensorValue`` / ``CurrentValue``.

A layout that does not fit the server raises :class:`LayoutMismatch` naming the path element that
was not found and under which node; the backend then tries the next configured layout, and if none
fits the session fails with every reason (nothing is read from a device it cannot place).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asyncua import Node, ua

from .config import BrowseLayout
from .uatyping import node_id


class LayoutMismatch(Exception):
    """The server does not have what the layout says."""


@dataclass
class Resolved:
    """A layout resolved on one server: NodeIds to read, subscribe and call."""

    layout: str
    device: ua.NodeId
    clock: ua.NodeId
    readings: dict[ua.NodeId, str] = field(default_factory=dict)  # value node -> reading key
    records: set[ua.NodeId] = field(default_factory=set)  # value nodes holding JSON
    methods: dict[str, tuple[ua.NodeId, ua.NodeId]] = field(default_factory=dict)  # command -> (object, method)


def _qname(el: str, ns: dict[str, int], device_id: str) -> ua.QualifiedName:
    alias, _, name = el.partition(":")
    return ua.QualifiedName(name.replace("{device}", device_id), ns[alias])


async def _follow(client: Any, start: Node, path: list[str], ns: dict[str, int], device_id: str,
                  what: str) -> list[Node]:
    """Every node the path reaches from ``start`` ('*' fans out over the child objects)."""
    nodes = [start]
    i = 0
    while i < len(path):
        if path[i] == "*":
            out: list[Node] = []
            for n in nodes:
                out += await n.get_children(refs=ua.ObjectIds.HierarchicalReferences,
                                            nodeclassmask=ua.NodeClass.Object)
            nodes, i = out, i + 1
            continue
        j = i
        while j < len(path) and path[j] != "*":
            j += 1
        seg = [_qname(el, ns, device_id) for el in path[i:j]]
        out = []
        for n in nodes:
            try:
                out.append(await n.get_child(seg))
            except ua.UaStatusCodeError as exc:
                if exc.code not in (ua.StatusCodes.BadNoMatch, ua.StatusCodes.BadNodeIdUnknown):
                    raise
                if path[:i].count("*") == 0:  # a fixed path must exist; under '*' a unit may lack it
                    raise LayoutMismatch(
                        f"{what}: {'/'.join(path[i:j])} not found under {n.nodeid.to_string()}"
                    ) from None
        nodes, i = out, j
    return nodes


async def _one(client: Any, start: Node, path: list[str], ns: dict[str, int], device_id: str,
               what: str) -> Node:
    nodes = await _follow(client, start, path, ns, device_id, what)
    if len(nodes) != 1:
        raise LayoutMismatch(f"{what}: {'/'.join(path)} gives {len(nodes)} nodes, not one")
    return nodes[0]


async def resolve(client: Any, device_id: str, name: str, layout: BrowseLayout,
                  namespaces: dict[str, str]) -> Resolved:
    """Resolve ``layout`` for ``device_id`` on the connected ``client``."""
    array = await client.get_namespace_array()
    ns: dict[str, int] = {}
    for alias, uri in namespaces.items():
        if uri in array:
            ns[alias] = array.index(uri)
    used = {el.partition(":")[0] for p in layout.required_paths() for el in p if el != "*"}
    absent = sorted(a for a in used if a not in ns)
    if absent:
        raise LayoutMismatch(f"layout {name}: namespaces not on the server: "
                             + ", ".join(f"{a}={namespaces[a]}" for a in absent))
    objects = client.get_node(node_id(ua.ObjectIds.ObjectsFolder))
    device = await _one(client, objects, layout.device, ns, device_id, f"layout {name} device")
    clock = await _one(client, device, layout.clock, ns, device_id, f"layout {name} clock")
    out = Resolved(name, device.nodeid, clock.nodeid)
    # (a server without the LADS namespace has no LADS functions: those value names are not looked for)
    value_names = [_qname(el, ns, device_id) for el in layout.function_values if el.partition(":")[0] in ns]
    for kind, containers in (("readings", layout.readings), ("records", layout.records)):
        for path in containers:
            for box in await _follow(client, device, path, ns, device_id, f"layout {name} {kind}"):
                for ref in await box.get_children_descriptions(refs=ua.ObjectIds.HierarchicalReferences):
                    bname = ref.BrowseName.Name
                    key = layout.rename.get(bname, bname)
                    value: ua.NodeId | None = None
                    if ref.NodeClass == ua.NodeClass.Variable:
                        value = ref.NodeId
                    elif ref.NodeClass == ua.NodeClass.Object and kind == "readings":
                        fn = client.get_node(ref.NodeId)
                        for qn in value_names:
                            try:
                                value = (await fn.get_child([qn])).nodeid
                                break
                            except ua.UaStatusCodeError:
                                continue
                    if value is None:
                        continue
                    if kind == "records":
                        # a record key shown in the readings containers too is the same key
                        for nid in [n for n, k in out.readings.items() if k == key and n != value]:
                            del out.readings[nid]
                        out.records.add(value)
                    elif key in out.readings.values() and out.readings.get(value) != key:
                        other = next(n for n, k in out.readings.items() if k == key)
                        raise LayoutMismatch(f"layout {name}: reading {key!r} found twice "
                                             f"({other.to_string()}, {value.to_string()}): rename one")
                    out.readings[value] = key
    if not out.readings:
        raise LayoutMismatch(f"layout {name}: no readings under {layout.readings}")
    if layout.methods:
        box = await _one(client, device, layout.methods, ns, device_id, f"layout {name} methods")
        for ref in await box.get_children_descriptions(refs=ua.ObjectIds.HasComponent,
                                                       nodeclassmask=ua.NodeClass.Method):
            out.methods[ref.BrowseName.Name] = (box.nodeid, ref.NodeId)
    for command, path in layout.commands.items():
        parent = device
        if len(path) > 1:
            parent = await _one(client, device, path[:-1], ns, device_id, f"layout {name} {command}")
        method = await _one(client, parent, path[-1:], ns, device_id, f"layout {name} {command}")
        out.methods[command] = (parent.nodeid, method.nodeid)
    return out
