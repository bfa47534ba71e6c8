"""The OPC UA companion specifications in our asyncua servers (issue 18): DI, IA, AMB, Machinery,
LADS, Robotics (OPC 40010) and PackML, from the official NodeSet2 files of the npm package
``node-opcua-nodesets`` (installed by the set-up from the registry into ``node_modules/``; never
committed).

asyncua 2.1 imports them in the order of :data:`NODESETS` with ``strict_mode=False`` (DI fails in
strict mode with ``BadParentNodeIdInvalid``; Machinery needs IA first). That costs ~1.9 s of CPU
(4.5-6 s wall on a loaded 2-core machine) per server. The nodes the import adds or changes
(~2,300) are therefore cached: the first start pickles them to
``$XDG_CACHE_HOME/aseptic_cell/opcua_nodesets/<key>.pickle`` (key: the asyncua version and the
SHA-256 of every NodeSet file; folder mode 0700, file written atomically), later starts put them
into the freshly initialised standard address space (~0.5 s CPU), restore the namespace array and
load the companion data types. ``python -m aseptic_cell.opcua.nodesets`` builds the cache (the
set-up runs it) and prints the timings. The cache is a pickle: it is only read from a folder owned
by this user and not writable by others.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["NODESETS", "NS", "CompanionSpecs", "load_companion_specs", "nodeset_dir"]

REPO = Path(__file__).resolve().parents[2]
ENV_DIR = "ASEPTIC_CELL_NODESETS_DIR"

# (file, model URI) in import order
NODESETS: tuple[tuple[str, str], ...] = (
    ("Opc.Ua.Di.NodeSet2.xml", "http://opcfoundation.org/UA/DI/"),
    ("Opc.Ua.IA.NodeSet2.xml", "http://opcfoundation.org/UA/IA/"),
    ("Opc.Ua.AMB.NodeSet2.xml", "http://opcfoundation.org/UA/AMB/"),
    ("Opc.Ua.Machinery.NodeSet2.xml", "http://opcfoundation.org/UA/Machinery/"),
    ("Opc.Ua.LADS.NodeSet2.xml", "http://opcfoundation.org/UA/LADS/"),
    ("Opc.Ua.Robotics.NodeSet2.xml", "http://opcfoundation.org/UA/Robotics/"),
    ("Opc.Ua.PackML.NodeSet2.xml", "http://opcfoundation.org/UA/PackML/"),
)
NS = {
    "DI": "http://opcfoundation.org/UA/DI/",
    "IA": "http://opcfoundation.org/UA/IA/",
    "AMB": "http://opcfoundation.org/UA/AMB/",
    "Machinery": "http://opcfoundation.org/UA/Machinery/",
    "LADS": "http://opcfoundation.org/UA/LADS/",
    "Robotics": "http://opcfoundation.org/UA/Robotics/",
    "PackML": "http://opcfoundation.org/UA/PackML/",
}


CACHE_FORMAT = "encodings-2"  # changes when what the import adds changes (invalidates old caches)


class NodeSetsMissing(RuntimeError):
    pass


def nodeset_dir() -> Path:
    """``$ASEPTIC_CELL_NODESETS_DIR``, else ``node_modules/node-opcua-nodesets/nodesets`` of the repo."""
    env = os.environ.get(ENV_DIR)
    d = Path(env) if env else REPO / "node_modules" / "node-opcua-nodesets" / "nodesets"
    missing = [f for f, _ in NODESETS if not (d / f).is_file()]
    if missing:
        raise NodeSetsMissing(
            f"companion NodeSets missing in {d}: {missing} (run the set-up: npm ci installs node-opcua-nodesets)"
        )
    return d


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aseptic_cell" / "opcua_nodesets"


def cache_key(directory: Path) -> str:
    import asyncua

    h = hashlib.sha256(f"asyncua {asyncua.__version__}; py {sys.version_info[:2]}; {CACHE_FORMAT}".encode())
    for f, _ in NODESETS:
        h.update(f.encode())
        h.update(hashlib.sha256((directory / f).read_bytes()).digest())
    return h.hexdigest()[:24]


def _safe_cache_file(path: Path) -> bool:
    """Only a file in a folder of ours that nobody else can write is unpickled."""
    try:
        for p in (path.parent, path):
            st = p.stat()
            if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                log.warning("NodeSet cache %s not owned by us or writable by others: ignored", p)
                return False
    except OSError:
        return False
    return True


@dataclass
class CompanionSpecs:
    """Namespace indices of the companion models in one server, and how they were loaded."""

    ns: dict[str, int]
    source: str  # "import" | "cache"
    seconds: float
    cpu_seconds: float
    nodes_added: int

    def idx(self, model: str) -> int:
        return self.ns[model]


def _node_bytes(nodes: Any) -> dict[Any, bytes]:
    out = {}
    for k, v in nodes.items():
        call, v.call = v.call, None
        try:
            out[k] = pickle.dumps(v, pickle.HIGHEST_PROTOCOL)
        finally:
            v.call = call
    return out


async def _import(server: Any, directory: Path) -> None:
    # the official files trip asyncua's importer in known, harmless places (DI's DesignToolOnly
    # placeholders, LADS/Robotics parent fix-ups): its warnings are not ours to show on every start
    xml_log = logging.getLogger("asyncua.common.xmlimporter")
    level = xml_log.level
    xml_log.setLevel(logging.ERROR)
    try:
        for f, _uri in NODESETS:
            await server.import_xml(str(directory / f), strict_mode=False)
    finally:
        xml_log.setLevel(level)
    await _add_encodings(server, directory)


ENCODINGS = ("Default Binary", "Default XML", "Default JSON")


async def _add_encodings(server: Any, directory: Path) -> int:
    """The DataTypeEncoding objects of the companion structures (``Default Binary``...), which asyncua
    2.1's importer drops (they have no parent: its AddNodes refuses them, unchecked), and each
    structure's ``DefaultEncodingId`` set to its Default Binary (the importer takes the first
    HasEncoding, the XML one in the LADS file). Without them a client that builds structures from the
    server's model (node-opcua's ``constructExtensionObject``: LADS ``KeyValueType`` for StartProgram)
    finds no binary encoding. Returns the number of encodings added."""
    import xml.etree.ElementTree as ET  # noqa: N817, S405 - the official NodeSet files of the set-up

    from asyncua import ua

    from .uatyping import node_id

    q = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
    ns_array = list(await server.get_namespace_array())
    existing = server.iserver.aspace._nodes  # noqa: SLF001 - (some encodings did get imported)
    added = 0
    for f, _uri in NODESETS:
        root = ET.parse(directory / f).getroot()  # noqa: S314
        uris = [u.text or "" for u in (root.find(f"{q}NamespaceUris") or [])]

        def nid(text: str, uris: list[str] = uris) -> ua.NodeId:
            n = ua.NodeId.from_string(text)
            if n.NamespaceIndex:
                n = node_id(n.Identifier, ns_array.index(uris[n.NamespaceIndex - 1]))  # type: ignore[arg-type]
            return n

        enc = {o.get("NodeId"): o.get("BrowseName") for o in root.iter(f"{q}UAObject")
               if o.get("BrowseName") in ENCODINGS}
        items = []
        binary: dict[ua.NodeId, ua.NodeId] = {}
        for dtype in root.iter(f"{q}UADataType"):
            for ref in dtype.iter(f"{q}Reference"):
                target = (ref.text or "").strip()
                if ref.get("ReferenceType") != "HasEncoding" or ref.get("IsForward") == "false" or target not in enc:
                    continue
                if nid(target) in existing:
                    if enc[target] == "Default Binary":
                        binary[nid(dtype.get("NodeId") or "")] = nid(target)
                    continue
                item = ua.AddNodesItem()
                item.RequestedNewNodeId = nid(target)
                item.BrowseName = ua.QualifiedName(enc[target], 0)
                item.NodeClass = ua.NodeClass.Object
                item.ParentNodeId = nid(dtype.get("NodeId") or "")
                item.ReferenceTypeId = node_id(ua.ObjectIds.HasEncoding)
                item.TypeDefinition = node_id(ua.ObjectIds.DataTypeEncodingType)
                attrs = ua.ObjectAttributes()
                attrs.DisplayName = ua.LocalizedText(enc[target])
                item.NodeAttributes = attrs
                items.append(item)
                if enc[target] == "Default Binary":
                    binary[item.ParentNodeId] = item.RequestedNewNodeId
        if items:
            res = await server.iserver.isession.add_nodes(items)
            added += sum(1 for r in res if r.StatusCode.is_good())
        for dtype_id, enc_id in binary.items():
            dv = await server.get_node(dtype_id).read_attribute(ua.AttributeIds.DataTypeDefinition)
            sdef = dv.Value.Value if dv.Value is not None else None
            if isinstance(sdef, ua.StructureDefinition) and sdef.DefaultEncodingId != enc_id:
                sdef.DefaultEncodingId = enc_id
                value = ua.DataValue(ua.Variant(sdef, ua.VariantType.ExtensionObject))
                await server.write_attribute_value(dtype_id, value, ua.AttributeIds.DataTypeDefinition)
    return added


async def load_companion_specs(server: Any, *, use_cache: bool = True) -> CompanionSpecs:
    """Put the companion NodeSets into an initialised asyncua ``server`` (before any namespace of
    its own is registered: the namespace indices must match the cache's)."""
    from asyncua import ua

    from .uatyping import node_id

    t0, c0 = time.perf_counter(), time.process_time()
    directory = nodeset_dir()
    nodes = server.iserver.aspace._nodes  # noqa: SLF001 - asyncua has no public bulk API
    before = list(await server.get_namespace_array())  # a copy: the import appends to the stored list
    path = _cache_dir() / f"{cache_key(directory)}.pickle"
    blob = None
    if use_cache and path.is_file() and _safe_cache_file(path):
        try:
            blob = pickle.loads(path.read_bytes())  # noqa: S301 - our own cache, checked above
            if len(blob.get("base_namespaces", ())) != len(before):  # (index 1 = the application URI)
                blob = None
        except Exception:  # noqa: BLE001 - a bad cache is rebuilt
            log.warning("NodeSet cache %s unreadable; importing", path, exc_info=True)
            blob = None
    if blob is not None:
        nodes.update(blob["nodes"])
        ns_node = server.get_node(node_id(ua.ObjectIds.Server_NamespaceArray))
        uris = before + blob["namespaces"][len(before):]
        await ns_node.write_value(ua.Variant(uris, ua.VariantType.String))
        source, added = "cache", len(blob["nodes"])
    else:
        snapshot = _node_bytes(nodes) if use_cache else {}
        await _import(server, directory)
        source, added = "import", len(nodes) - len(snapshot)
        if use_cache:
            changed = {}
            for k, b in _node_bytes(nodes).items():
                if snapshot.get(k) != b:
                    v = nodes[k]
                    call, v.call = v.call, None
                    changed[k] = pickle.loads(pickle.dumps(v, pickle.HIGHEST_PROTOCOL))  # noqa: S301
                    v.call = call
            data = {"base_namespaces": before, "namespaces": list(await server.get_namespace_array()),
                    "nodes": changed}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(path.parent, 0o700)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as fh:
                    pickle.dump(data, fh, pickle.HIGHEST_PROTOCOL)
                os.replace(tmp, path)
                log.info("NodeSet cache written: %s (%d nodes)", path, len(changed))
            except OSError:
                log.warning("NodeSet cache %s not written", path, exc_info=True)
    try:
        await server.load_data_type_definitions()
    except Exception:  # noqa: BLE001 - the types stay browsable; only decoding custom structs suffers
        log.warning("companion data type definitions not loaded", exc_info=True)
    ns = {name: await server.get_namespace_index(uri) for name, uri in NS.items()}
    return CompanionSpecs(ns, source, time.perf_counter() - t0, time.process_time() - c0, added)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aseptic_cell.opcua.nodesets", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--ensure", action="store_true", help="only build the cache if it is missing (the set-up)")
    p.add_argument("--cold", action="store_true", help="the first start imports the XML (the cache is not read)")
    p.add_argument("--devices", nargs="*", metavar="ID",
                   help="also build these emulated device servers (config/ of the repo; not listening) and "
                   "report their address-space sizes and build times (default with the flag: ISO1 VHP1 AC1 ARM1)")
    a = p.parse_args(argv)
    if a.ensure:
        try:
            if (_cache_dir() / f"{cache_key(nodeset_dir())}.pickle").is_file():
                return 0
        except NodeSetsMissing as exc:
            print(exc, file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING)
    import asyncio

    from asyncua import Server

    async def one(use_cache: bool) -> dict[str, Any]:
        s = Server()
        t0, c0 = time.perf_counter(), time.process_time()
        await s.init()
        init = (time.perf_counter() - t0, time.process_time() - c0)
        spec = await load_companion_specs(s, use_cache=use_cache)
        return {
            "source": spec.source,
            "init_s": round(init[0], 2),
            "init_cpu_s": round(init[1], 2),
            "companion_s": round(spec.seconds, 2),
            "companion_cpu_s": round(spec.cpu_seconds, 2),
            "nodes": len(s.iserver.aspace._nodes),  # noqa: SLF001
        }

    async def devices(ids: list[str]) -> dict[str, Any]:
        from ..config import load_config
        from .config import parse_opcua_config
        from .emulator import EmulatedWorld

        ocfg = parse_opcua_config({"devices": {d: {"endpoint": f"opc.tcp://127.0.0.1:{46190 + i}/{d}"}
                                               for i, d in enumerate(ids)}})
        world = EmulatedWorld(load_config(REPO / "config"), ocfg, ids)
        res: dict[str, Any] = {}
        for d, srv in world.servers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            await srv.start()  # builds the address space; never listens
            assert srv.server is not None
            res[d] = {"kind": srv.kind, "build_s": round(time.perf_counter() - t0, 2),
                      "build_cpu_s": round(time.process_time() - c0, 2),
                      "nodes": len(srv.server.iserver.aspace._nodes),  # noqa: SLF001
                      "own_nodes": sum(1 for n in srv.server.iserver.aspace._nodes  # noqa: SLF001
                                       if n.NamespaceIndex == srv.ns)}
        return res

    try:
        first = asyncio.run(one(not a.cold))
        second = asyncio.run(one(True))
        servers = asyncio.run(devices(a.devices or ["ISO1", "VHP1", "AC1", "ARM1"])) if a.devices is not None else None
    except NodeSetsMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    out = {"first": first, "cached": second, "cache_dir": str(_cache_dir()),
           **({"device_servers": servers} if servers is not None else {})}
    if not a.quiet:
        print(json.dumps(out) if a.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
