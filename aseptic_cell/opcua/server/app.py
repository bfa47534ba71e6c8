"""The cell OPC UA server process: config, PKI, hardened asyncua server, address space, ROS bridge.

``python -m aseptic_cell.opcua.server --config config/opcua_server.yaml`` (or the ROS node
``aseptic_cell.nodes.opcua_server_node``) runs it; ``--export-nodeset PATH`` writes the
information model as NodeSet2 XML and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import ua
from asyncua.common.connection import TransportLimits
from asyncua.server.internal_session import InternalSession

from aseptic_cell.auth import AuthError, PermissionDenied, UserDirectory
from aseptic_cell.opcua.nodesets import CompanionSpecs, NodeSetsMissing, load_companion_specs
from aseptic_cell.opcua.uatyping import node_id, status_code
from aseptic_cell.results import CommandResult

from .config import OpcUaServerConfig, ResolvedPaths, load_server_config
from .flood import FloodGuard
from .model import BATCH_METHODS, DEFAULT_DEVICE_IDS, RELOAD_ACTION, CellAddressSpace
from .pki import ServerPki, TrustList
from .security import CellUaServer, DirectoryUserManager, session_account

log = logging.getLogger("aseptic_cell.opcua.server")

__all__ = ["CellServerApp", "cell_layout", "main"]


class _WallClock:
    def now(self) -> float:
        return time.time()


def cell_layout(config_dir: Path) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
    """Device node -> device id, and the interlock rule instances, from the cell configuration.

    Falls back to the default ids and no pre-created interlocks if the config cannot be loaded
    (instances then appear as the supervisor publishes them).
    """
    try:
        from aseptic_cell.config.loader import load_config
        from aseptic_cell.interlocks.engine import InterlockEngine

        cfg = load_config(config_dir)
        lay = cfg.layout
        ids = {
            "isolator": lay.isolator.id,
            "vhp": lay.vhp_unit.id,
            "autoclave": lay.autoclave.id,
            "arm": lay.robot.id,
        }
        engine = InterlockEngine.from_config(cfg, lambda: 0.0)
        instances = []
        seen: set[tuple[str, str]] = set()
        for st in engine.evaluate_all():
            inst = ",".join(f"{k}={v}" for k, v in sorted(st.binding.items()))
            if (st.rule_id, inst) not in seen:
                seen.add((st.rule_id, inst))
                instances.append((st.rule_id, inst, st.title, st.severity))
        return ids, instances
    except Exception as exc:  # noqa: BLE001
        log.warning(
            "cell configuration in %s not usable for the address space (%s); using defaults", config_dir, exc
        )
        return dict(DEFAULT_DEVICE_IDS), []


class CellServerApp:
    """One cell server. ``await start()``, ``await stop()``; or ``await run_forever(stop_event)``."""

    def __init__(
        self,
        cfg: OpcUaServerConfig,
        paths: ResolvedPaths,
        *,
        ros: bool = True,
        ros_args: Sequence[str] = (),
        domain_id: int | None = None,
        node_name: str = "opcua_server",
        endpoint: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.ros_enabled = ros
        self.ros_args = list(ros_args)
        self.domain_id = domain_id
        self.node_name = node_name
        self.endpoint = endpoint or cfg.endpoint
        self.directory = UserDirectory.from_file(paths.users_file, _WallClock())
        if ros:  # in the cell: the shared, persistent lock-out store of every interface (issue 12)
            from aseptic_cell.auth.lockout import LoginGuard

            self.directory.guard = LoginGuard.shared(self.directory.config.policy, source="opcua_server")
        self.users = DirectoryUserManager(self.directory, max_pending=cfg.limits.max_pending_logins)
        self.pki = ServerPki(paths.pki_dir)
        self.trust = TrustList(self.pki.trusted_dir, self.pki.rejected_dir)
        self.guard = FloodGuard(cfg.limits.flood_limits(), [])
        self.server = CellUaServer(self.users, self.trust, self.guard)
        self.model: CellAddressSpace | None = None
        self.companion: CompanionSpecs | None = None
        self.bridge: Any = None
        self._tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ set-up
    def method_args(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for name, _cmd, action, _d in BATCH_METHODS:
            rule = self.directory.permissions.get(action)
            out[name] = ("Password", "Reason") if rule is not None and rule.signature else ("Reason",)
        out["ReloadConfiguration"] = ("Password", "Reason")
        return out

    async def init_model(self) -> CellAddressSpace:
        """asyncua init + the cell address space (no network, no ROS): enough to export the NodeSet."""
        s, cfg = self.server, self.cfg
        await s.init()
        try:  # the companion NodeSets before any namespace of our own (cached; see nodesets.py)
            self.companion = await load_companion_specs(s)
            log.info("companion NodeSets (%s) in %.2f s", self.companion.source, self.companion.seconds)
        except NodeSetsMissing as exc:
            self.companion = None
            log.error("%s: serving without the standard PackML/Machinery types", exc)
        s.set_endpoint(self.endpoint)
        s.set_server_name(cfg.server_name)
        await s.set_application_uri(cfg.application_uri)
        s.product_uri = "urn:aseptic-cell:opcua:cell-server"
        s.manufacturer_name = cfg.identification.manufacturer
        s.application_type = ua.ApplicationType.Server
        lim = cfg.limits
        s.limits = TransportLimits(
            max_recv_buffer=lim.max_chunk_size,
            max_send_buffer=lim.max_chunk_size,
            max_chunk_count=lim.max_chunk_count,
            max_message_size=lim.max_message_size,
        )
        it = s.iserver
        it.max_connections = lim.max_connections
        it.max_pending_messages_per_connection = lim.max_pending_messages_per_connection
        it.max_pending_activation_seconds = 0  # the FloodGuard enforces every handshake deadline
        it.max_subscriptions = lim.max_subscriptions
        it.min_session_timeout_ms = lim.min_session_timeout_ms
        it.max_session_timeout_ms = lim.max_session_timeout_ms
        InternalSession.max_connections = lim.max_sessions
        ids, interlocks = cell_layout(self.paths.config_dir)
        ids = {n: i for n, i in ids.items() if n in self.cfg.devices}
        ident = {
            "Manufacturer": cfg.identification.manufacturer,
            "Model": cfg.identification.model,
            "ProductCode": cfg.identification.product_code,
            "SerialNumber": cfg.identification.serial_number,
            "ProductInstanceUri": cfg.identification.product_instance_uri,
            "SoftwareRevision": cfg.identification.software_revision,
            "Location": cfg.identification.location,
        }
        self.model = CellAddressSpace(
            s,
            namespace_uri=cfg.namespace_uri,
            machine_name=cfg.machine_name,
            identification=ident,
            device_ids=ids,
            interlock_instances=interlocks,
            method_args=self.method_args(),
            method_handler=self.handle_method,
            stale_after_s=cfg.stale_after_s,
            companion=self.companion,
        )
        await self.model.build()
        # A&C (Part 9): Acknowledge is the type's method (AcknowledgeableConditionType), called on the
        # ConditionId; asyncua runs the method node's callback with that object as the parent
        ack = s.get_node(node_id(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge))
        s.link_method(ack, self.acknowledge_condition)
        return self.model

    async def export_nodeset(self, path: str | Path) -> None:
        assert self.model is not None
        await self.server.export_xml_by_ns(str(path), [self.cfg.namespace_uri], export_values=True)

    async def start(self) -> None:
        if self.model is None:
            await self.init_model()
        # the address space (with the companion NodeSets) lives as long as the server: keep it out
        # of the cyclic GC (full collections of it stall the loop for seconds, and the exit)
        gc.freeze()
        host = urlparse(self.endpoint).hostname or "localhost"
        names = sorted({self.cfg.hostname, host, socket.gethostname()} - {"0.0.0.0", "::"})
        self.pki.ensure(
            application_uri=self.cfg.application_uri,
            common_name=self.cfg.server_name,
            hostnames=names,
            days=self.cfg.certificate_days,
        )
        await self.server.load_certificate(str(self.pki.cert_path))
        await self.server.load_private_key(str(self.pki.key_path))
        n = self.trust.reload()
        log.info("trust list %s: %d client certificate(s)", self.pki.trusted_dir, n)
        await self.server.start()
        log.info("cell OPC UA server listening on %s (Basic256Sha256/SignAndEncrypt only)", self.endpoint)
        if self.ros_enabled:  # in the background: a slow DDS start must not hold up OPC UA
            self._tasks.append(asyncio.create_task(self._start_bridge()))
        self._tasks.append(asyncio.create_task(self._watch()))

    async def _start_bridge(self) -> None:
        from .ros_bridge import RosBridge

        assert self.model is not None
        bridge = RosBridge(
            asyncio.get_running_loop(),
            self._apply,
            devices=list(self.model.device_ids),
            ros_args=self.ros_args,
            domain_id=self.domain_id,
            node_name=self.node_name,
        )
        self._starting_bridge = bridge
        try:
            await asyncio.get_running_loop().run_in_executor(None, bridge.start)
        except Exception:  # noqa: BLE001 - no ROS = no data, not a dead server
            log.exception("ROS bridge failed to start; the server publishes no cell data")
            return
        self.bridge = bridge
        log.info("ROS bridge up (node %s)", self.node_name)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        bridge = self.bridge or getattr(self, "_starting_bridge", None)
        self.bridge = None
        if bridge is not None:
            try:
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, bridge.close), 5.0)
            except Exception:  # noqa: BLE001
                log.warning("ROS bridge did not close cleanly", exc_info=True)
        await self.server.stop()

    async def run_forever(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # ------------------------------------------------------------------ data
    async def _apply(self, source: str, payload: Any) -> None:
        m = self.model
        assert m is not None
        if source == "batch":
            await m.apply_batch_status(payload)
        elif source == "interlocks":
            await m.apply_interlocks(payload)
        elif source == "alarms":
            await m.apply_alarms(payload)
        elif source == "batches":
            await m.apply_batches(payload)
        elif source.startswith("device:"):
            await m.apply_device(source.split(":", 1)[1], payload)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                assert self.model is not None
                await self.model.mark_stale()
                await self.model.set_connected(bool(self.bridge and self.bridge.batch_service_ready()))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("staleness watch failed")

    # ------------------------------------------------------------------ methods
    async def handle_method(self, name: str, values: list[str]) -> CommandResult | ua.StatusCode:
        account = session_account()
        if account is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        if name == "ReloadConfiguration":
            return await self._reload(account, values[0], values[1])
        spec = {m[0]: m for m in BATCH_METHODS}.get(name)
        if spec is None:
            return status_code(ua.StatusCodes.BadMethodInvalid)
        _name, command, action, _d = spec
        try:
            rule = self.directory.authorize(account, action)
        except PermissionDenied as exc:
            log.warning("OPC UA %s by %s (%s) refused: %s", name, account.id, account.role, exc.reason)
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        password, reason = (values[0], values[1]) if len(values) == 2 else ("", values[0])
        if rule.signature and not password:
            return CommandResult(
                False, "SIGNATURE_REQUIRED", f"{action} needs an e-signature: enter your password"
            )
        if self.bridge is None:
            return CommandResult(False, "UNAVAILABLE", "no ROS connection")
        r = await self.bridge.batch_command(
            command,
            user=account.id,
            password=password,
            meaning=rule.meaning or "" if rule.signature else "",
            reason=reason,
            timeout_s=self.cfg.command_timeout_s,
        )
        log.info("OPC UA %s by %s -> %s %s", name, account.id, r["code"], r["reason"])
        return CommandResult(r["accepted"], r["code"], r["reason"], state=r["state"])

    async def acknowledge_condition(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        """OPC UA A&C ``Acknowledge(EventId, Comment)`` on an alarm's ConditionId: permission
        ``alarm.ack`` of the session's account (as the HMI's), then the supervisor's
        ``/cell/alarms/acknowledge`` (the alarm manager records it; no second way to acknowledge)."""
        from aseptic_cell.alarms.permissions import ALARM_PERMISSIONS

        account = session_account()
        if account is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        vals = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        if len(vals) < 2:
            return status_code(ua.StatusCodes.BadArgumentsMissing)
        event_id, comment = vals[0], vals[1]
        text = comment.Text if isinstance(comment, ua.LocalizedText) else str(comment or "")
        conditions = self.model.conditions if self.model is not None else None
        if conditions is None:
            return status_code(ua.StatusCodes.BadNodeIdUnknown)
        aid = conditions.alarm_of(parent, bytes(event_id) if isinstance(event_id, (bytes, bytearray)) else None)
        if not isinstance(aid, str):
            return aid if isinstance(aid, ua.StatusCode) else status_code(ua.StatusCodes.BadNodeIdUnknown)
        try:
            self.directory.authorize(account, ALARM_PERMISSIONS["acknowledge"])
        except PermissionDenied as exc:
            log.warning("OPC UA Acknowledge %s by %s (%s) refused: %s", aid, account.id, account.role, exc.reason)
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        if self.bridge is None:
            return status_code(ua.StatusCodes.BadResourceUnavailable)
        r = await self.bridge.acknowledge_alarm(aid, user=account.id, comment=text,
                                                timeout_s=self.cfg.command_timeout_s)
        log.info("OPC UA Acknowledge %s by %s -> %s %s", aid, account.id, r["accepted"], r["reason"])
        if not r["accepted"]:  # e.g. already acknowledged, or the supervisor refused
            return status_code(ua.StatusCodes.BadInvalidState)
        return []

    async def _reload(self, account: Any, password: str, reason: str) -> CommandResult | ua.StatusCode:
        try:
            rule = self.directory.authorize(account, RELOAD_ACTION)
        except PermissionDenied as exc:
            log.warning(
                "OPC UA ReloadConfiguration by %s (%s) refused: %s", account.id, account.role, exc.reason
            )
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        if not reason.strip():
            return CommandResult(False, "REASON_REQUIRED", "a reason is required for a configuration change")
        content = json.dumps(
            {
                "action": RELOAD_ACTION,
                "target": "opcua_server",
                "reason": reason,
                "users_file": str(self.paths.users_file),
                "t": time.time(),
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(content.encode()).hexdigest()
        loop = asyncio.get_running_loop()
        try:
            sig = await loop.run_in_executor(
                None,
                lambda: self.directory.sign(
                    account.id, password, rule.meaning or "authorship", digest, action=RELOAD_ACTION
                ),
            )
        except (AuthError, ValueError) as exc:
            return CommandResult(False, "SIGNATURE_FAILED", getattr(exc, "reason", str(exc)))
        try:
            new_dir = UserDirectory.from_file(self.paths.users_file, _WallClock(), guard=self.directory.guard)
        except Exception as exc:  # noqa: BLE001
            return CommandResult(False, "INVALID_CONFIG", str(exc))
        self.directory = new_dir
        self.users.directory = new_dir
        n = self.trust.reload()
        log.warning(
            "%s: reloaded users (%d) and trust list (%d certificates); reason: %s",
            sig.manifest(),
            len(new_dir.config.users),
            n,
            reason,
        )
        return CommandResult(
            True, "OK", f"reloaded {len(new_dir.config.users)} users, {n} trusted certificates"
        )


# ---------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cell_opcua_server", description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", default=None, help="opcua_server.yaml (default: <config-dir>/opcua_server.yaml)"
    )
    p.add_argument(
        "--config-dir", default=None, help="cell configuration directory (default: the repo's config/)"
    )
    p.add_argument("--endpoint", default=None, help="override the endpoint URL (opc.tcp://host:port/path/)")
    p.add_argument("--pki-dir", default=None, help="override the PKI directory")
    p.add_argument("--no-ros", action="store_true", help="serve the model without the ROS bridge")
    p.add_argument("--export-nodeset", metavar="PATH", help="write the NodeSet2 XML and exit")
    p.add_argument("--ready-file", default=None, help="write {endpoint, pid, cert} here once listening")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def resolve_config(
    config: str | None, config_dir: str | None, overrides: Mapping[str, Any] | None = None
) -> tuple[OpcUaServerConfig, ResolvedPaths]:
    from aseptic_cell.config.loader import default_config_dir

    cdir = Path(config_dir) if config_dir else default_config_dir()
    path = Path(config) if config else cdir / "opcua_server.yaml"
    cfg, paths = load_server_config(path)
    if config_dir:
        paths = paths.model_copy(update={"config_dir": cdir.resolve()})
    if overrides:
        if overrides.get("pki_dir"):
            paths = paths.model_copy(update={"pki_dir": Path(overrides["pki_dir"]).resolve()})
    return cfg, paths


async def _amain(args: argparse.Namespace, ros_args: Sequence[str], node_name: str = "opcua_server") -> int:
    cfg, paths = resolve_config(args.config, args.config_dir, {"pki_dir": args.pki_dir})
    app = CellServerApp(
        cfg,
        paths,
        ros=not args.no_ros and not args.export_nodeset,
        ros_args=ros_args,
        endpoint=args.endpoint,
        node_name=node_name,
    )
    if args.export_nodeset:
        await app.init_model()
        await app.export_nodeset(args.export_nodeset)
        print(f"wrote {args.export_nodeset}")
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    if args.ready_file:
        Path(args.ready_file).write_text(
            json.dumps(
                {"endpoint": app.endpoint, "pid": __import__("os").getpid(), "cert": str(app.pki.cert_path)}
            )
        )
    try:
        await stop.wait()
    finally:
        await app.stop()
    return 0


def main(argv: Sequence[str] | None = None, *, node_name: str = "opcua_server") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("asyncua", "asyncua.server.uaprocessor", "asyncua.server.address_space"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.INFO)
    try:
        return asyncio.run(_amain(args, ros_args, node_name))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        log.error("cell OPC UA server: %s", exc)
        return 2
