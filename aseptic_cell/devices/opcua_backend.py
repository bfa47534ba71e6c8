"""Backend for ``hardware: opcua``: an asyncua client of the device's own OPC UA server.

Mirrors :class:`.sim_backend.SimBackend` (same protocol, nothing above knows which one it has):
a background thread runs an asyncio loop holding one asyncua ``Client``. It finds the device's
nodes by browse paths (issue 18): the ``mapping`` of opcua.yaml gives, per device kind (or per
device), the layouts to try in order (:mod:`aseptic_cell.opcua.browse`). The default for the
isolator, VHP unit and autoclave is ``lads``: the readings are the variables (and LADS function
objects' SensorValue/CurrentValue) in the standard LADS model, LADSDeviceType -> FunctionalUnitSet ->
every functional unit -> FunctionSet; records, clock and command methods by their configured paths.
``project`` is the contract of :mod:`aseptic_cell.opcua.model` (ProcessImage; the arm, the process
equipment, ``interop/device_server.js``). Another vendor's server is driven by adding a layout.

Connection handling (OPCUA_NOTES "robust clients"):

* a session = connect (bounded by ``connect_timeout_s``) → resolve the first layout that fits
  (nodes by browse path; none fits = the session fails, with each layout's reason) →
  **read every value** → subscribe (publishing interval from config) → only
  then ``connected()`` is true and readings are trusted; after every reconnect the same
  full re-read happens before anything is published;
* health: a status read (ServerStatus.State + SimTime) every ``health_period_s`` that must
  answer within ``health_timeout_s``; no data-change notification for ``silence_timeout_s``
  also counts as lost (``SimTime`` is part of the contract: the device's clock advances every
  update, so a live subscription always delivers). ``Readings.received_wall`` is the time of
  the last notification, so a frozen server stops it and the node's age check fires;
* on loss: ``connected()`` false at once, the session is dropped, and a new one is tried
  with capped exponential backoff (``backoff_initial_s`` doubling to ``backoff_max_s``).
  asyncua's own ``auto_reconnect`` is not used (measured stalls; OPCUA_NOTES).

Readings: the ProcessImage values as they are (a NaN stays NaN: the signal mapping turns a
non-finite value into unknown = unsafe), Records decoded from JSON, ``t`` = ``SimTime``.
A value with a Bad status code is reported as ``None`` (unknown).

Commands: a method call with a timeout (a command the layout has no method for is refused
``INVALID`` without a call). Transport failure → ``COMM_LOST``; no answer in
time → ``TIMEOUT`` (the device may or may not have acted: the node treats both as unsafe).

Configuration: ``config/opcua.yaml`` (:mod:`aseptic_cell.opcua.config`), found through the
``config_path`` option, else ``$ASEPTIC_CELL_OPCUA_CONFIG``, else ``<config_dir>/opcua.yaml``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..opcua.uatyping import node_id
from ..results import CommandResult
from .backend import BackendError, Readings

log = logging.getLogger("aseptic_cell.opcua_backend")


class _Lost(Exception):
    """The session is no longer trustworthy."""


class OpcUaBackend:
    """Device backend over OPC UA.

    Args:
        device_id, kind: as every backend.
        endpoint: opc.tcp URL (default: ``devices.<device_id>.endpoint`` of opcua.yaml).
        config_path / config_dir / config: where the OPC UA configuration comes from.
        on_readings: optional listener called (in the backend thread) after each batch of new
            values; exceptions are logged and ignored (observation never becomes control).
        **client_overrides: fields of ``client:`` in opcua.yaml to override (tests, benchmark).
    """

    def __init__(
        self,
        *,
        device_id: str,
        kind: str,
        endpoint: str | None = None,
        config_path: str | None = None,
        config_dir: str | None = None,
        config: Any = None,
        on_readings: Callable[[Readings], None] | None = None,
        **client_overrides: Any,
    ) -> None:
        from ..opcua.config import ClientSettings, load_opcua_config

        self.device_id = device_id
        self.kind = kind
        if config is None and endpoint is None:
            config = load_opcua_config(config_path, config_dir)
        if endpoint is None:
            endpoint = config.endpoint(device_id).endpoint
        base = config.client if config is not None else ClientSettings()
        self.settings = ClientSettings.model_validate({**base.model_dump(), **client_overrides})
        self.endpoint = endpoint
        self._base_dir = config.base_dir if config is not None else Path.cwd()
        self._emulator_pki = (
            config.emulator.security.pki_root(self._base_dir) if config is not None else None
        )
        self.on_readings = on_readings
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._device_time = 0.0
        self._wall = 0.0
        self._snapshot: Readings | None = None
        self._have_data = False
        self._connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._client: Any = None
        self._methods: dict[str, tuple[Any, Any]] = {}  # command -> (object, method) NodeIds
        from ..opcua.config import BrowseMapping

        mapping = config.mapping if config is not None else BrowseMapping()
        ep = config.devices.get(device_id) if config is not None else None
        self._layouts = mapping.for_device(kind, ep)
        self._namespaces = dict(mapping.namespaces)
        self.layout = ""  # the layout the current session resolved
        self.sessions = 0  # sessions established (1 = first connect; more = reconnects)
        self.last_error = ""
        self.connected_since = 0.0
        self._sub_lost = ""

    # ================================================================== lifecycle
    def connect(self, timeout_s: float) -> None:
        if self._thread is None:
            self._loop = asyncio.new_event_loop()
            started = threading.Event()
            self._thread = threading.Thread(
                target=self._run_loop, args=(started,), name=f"opcua-backend-{self.device_id}", daemon=True
            )
            self._thread.start()
            started.wait(5.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._connected and self._have_data:
                return
            time.sleep(0.02)
        err = self.last_error
        self.close()
        raise BackendError(
            f"no OPC UA device {self.device_id!r} at {self.endpoint} within {timeout_s:.1f} s"
            + (f" (last error: {err})" if err else "")
        )

    def _run_loop(self, started: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        started.set()
        try:
            self._loop.run_until_complete(self._supervise())
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            except Exception:  # noqa: BLE001
                pass
            self._loop.close()

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive() and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
            thread.join(timeout=5.0)
        self._thread = None
        self._loop = None
        self._connected = False

    def connected(self) -> bool:
        return self._connected

    def latest(self) -> Readings | None:
        with self._lock:
            if not self._have_data:
                return None
            if self._snapshot is None:
                vals = dict(self._values)
                vals["t"] = self._device_time
                self._snapshot = Readings(
                    values=vals, device_time=self._device_time, received_wall=self._wall
                )
            return self._snapshot

    # ================================================================== session supervision
    async def _supervise(self) -> None:
        assert self._stop is not None
        delay = self.settings.backoff_initial_s
        while not self._stop.is_set():
            established = False
            try:
                established = await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure = connection lost
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._connected:
                    log.warning("%s: OPC UA connection lost: %s", self.device_id, self.last_error)
            self._connected = False
            await self._drop_client()
            if self._stop.is_set():
                break
            if established:
                delay = self.settings.backoff_initial_s
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2.0, self.settings.backoff_max_s)
        await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), timeout=1.0)
        except Exception:  # noqa: BLE001 - the peer may be dead or frozen
            try:
                client.disconnect_socket()
            except Exception:  # noqa: BLE001
                pass

    async def _session(self) -> bool:
        from asyncua import Client, ua

        s = self.settings
        client = Client(self.endpoint, timeout=s.request_timeout_s)
        client.session_timeout = int(s.session_timeout_s * 1000)
        client.name = f"aseptic_cell bridge {self.device_id}"
        self._client = client
        if s.security.mode == "sign_and_encrypt":
            await self._secure(client)
        await asyncio.wait_for(client.connect(), timeout=s.connect_timeout_s)
        dev = self.device_id
        # --- the tag table, by browse paths (the configured layouts, first that fits)
        found = await asyncio.wait_for(
            self._resolve(client), timeout=max(s.connect_timeout_s, 10 * s.request_timeout_s)
        )
        self.layout = found.layout
        nodes: dict[Any, tuple[str, bool]] = {
            nid: (key, nid in found.records) for nid, key in found.readings.items()}
        simtime = client.get_node(found.clock)
        self._keys = {nid: key for nid, (key, _rec) in nodes.items()}
        self._records = set(found.records)
        self._simtime_id = simtime.nodeid
        self._methods = found.methods
        # --- re-read everything before trusting anything (also after a reconnect)
        node_list = [client.get_node(n) for n in nodes]
        dvs = await asyncio.wait_for(
            client.read_attributes(node_list + [simtime]),
            timeout=max(s.request_timeout_s, 0.002 * len(node_list)),
        )
        fresh: dict[str, Any] = {}
        for n, dv in zip(node_list, dvs[:-1], strict=True):
            key, rec = nodes[n.nodeid]
            fresh[key] = self._decode(dv, rec)
        t = self._decode(dvs[-1], False)
        # --- subscribe
        handler = _Handler(self)
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = s.publishing_interval_ms
        params.RequestedLifetimeCount = 300
        params.RequestedMaxKeepAliveCount = max(3, int(1000.0 / s.publishing_interval_ms))  # keep-alive ~1 s
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        sub = await asyncio.wait_for(client.create_subscription(params, handler), s.request_timeout_s)
        await asyncio.wait_for(
            # sampling_interval: a float in ms (asyncua annotates its ua.Double marker subclass)
            sub.subscribe_data_change(  # type: ignore[call-overload]
                node_list + [simtime], queuesize=1, sampling_interval=s.sampling_interval_ms
            ),
            timeout=max(s.request_timeout_s, 0.005 * len(node_list)),
        )
        self._sub_lost = ""
        with self._lock:
            self._values = fresh
            if isinstance(t, (int, float)):
                self._device_time = float(t)
            self._wall = time.monotonic()
            self._snapshot = None
            self._have_data = True
        self.sessions += 1
        self.connected_since = time.monotonic()
        self._connected = True
        self.last_error = ""
        log.info(
            "%s: connected to %s (layout %s: %d variables, %d methods; session %d)",
            dev, self.endpoint, found.layout, len(nodes), len(found.methods), self.sessions,
        )
        self._notify()
        # --- health watch
        server_state = client.get_node(node_id(ua.ObjectIds.Server_ServerStatus_State))
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=s.health_period_s)
                break
            except TimeoutError:
                pass
            try:
                st, sim_t = await asyncio.wait_for(
                    client.read_values([server_state, simtime]), timeout=s.health_timeout_s
                )
            except TimeoutError:
                raise _Lost(
                    f"status read not answered within {s.health_timeout_s:g} s (server frozen?)"
                ) from None
            if st != ua.ServerState.Running and st != 0:
                raise _Lost(f"server state {st}")
            if self._sub_lost:
                raise _Lost(f"subscription lost: {self._sub_lost}")
            silent = time.monotonic() - self._wall
            if silent > s.silence_timeout_s:
                raise _Lost(f"no data-change notification for {silent:.1f} s (SimTime not advancing)")
        return True

    async def _resolve(self, client: Any) -> Any:
        """The first configured layout (``mapping`` of opcua.yaml) that fits the server."""
        from ..opcua.browse import LayoutMismatch, resolve

        why = []
        for name, layout in self._layouts:
            try:
                found = await resolve(client, self.device_id, name, layout, self._namespaces)
            except LayoutMismatch as exc:
                why.append(str(exc))
                continue
            if why:
                log.info("%s: layout %s (before: %s)", self.device_id, name, "; ".join(why))
            return found
        raise _Lost(f"{self.device_id}: no configured browse layout fits the server: " + "; ".join(why))

    async def _secure(self, client: Any) -> None:
        """Basic256Sha256/SignAndEncrypt with the bridge's certificate, the device server's pinned
        certificate and a user name + password (from the environment, never from a file)."""
        import os

        from asyncua import ua
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

        sec = self.settings.security

        def path(p: str) -> str:
            q = Path(p.replace("{device}", self.device_id)).expanduser()
            return str(q if q.is_absolute() else self._base_dir / q)

        if not sec.certificate or not sec.private_key or not sec.user:
            raise _Lost("client.security: sign_and_encrypt needs certificate, private_key and user")
        if sec.server_certificate:
            server_cert = path(sec.server_certificate)
        elif self._emulator_pki is not None:
            server_cert = str(self._emulator_pki / self.device_id / "own" / "cert.der")
        else:
            raise _Lost("client.security.server_certificate is not set")
        password = os.environ.get(sec.password_env)
        if password is None:
            raise _Lost(f"client.security: ${sec.password_env} (the password of {sec.user!r}) is not set")
        client.application_uri = sec.application_uri
        client.set_user(sec.user)
        client.set_password(password)
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            path(sec.certificate),
            path(sec.private_key),
            server_certificate=server_cert,
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )

    @staticmethod
    def _decode(dv: Any, record: bool) -> Any:
        if dv is None or (dv.StatusCode is not None and not dv.StatusCode.is_good()):
            return None
        v = dv.Value.Value if dv.Value is not None else None
        if record:
            if not isinstance(v, str):
                return None
            try:
                return json.loads(v)
            except ValueError:
                return None
        return v

    def _on_change(self, nodeid: Any, dv: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if nodeid == self._simtime_id:
                t = self._decode(dv, False)
                if isinstance(t, (int, float)):
                    self._device_time = float(t)
            else:
                key = self._keys.get(nodeid)
                if key is not None:
                    self._values[key] = self._decode(dv, nodeid in self._records)
            self._wall = now
            self._snapshot = None

    def _notify(self) -> None:
        if self.on_readings is None:
            return
        try:
            r = self.latest()
            if r is not None:
                self.on_readings(r)
        except Exception as exc:  # noqa: BLE001 - observation never becomes control
            log.error("%s: on_readings listener failed: %r", self.device_id, exc)

    # ================================================================== commands
    def command(
        self, name: str, args: dict[str, Any], *, user: str = "", reason: str = "", timeout_s: float = 5.0
    ) -> CommandResult:
        loop = self._loop
        if loop is None or not self._connected:
            return CommandResult(
                False,
                "COMM_LOST",
                f"no OPC UA connection to {self.device_id} ({self.endpoint})"
                + (f": {self.last_error}" if self.last_error else ""),
            )
        if name not in self._methods:
            return CommandResult(
                False, "INVALID",
                f"{self.device_id}: the server shows no method for {name!r} (layout {self.layout}; "
                f"methods: {sorted(self._methods)})",
            )
        fut = asyncio.run_coroutine_threadsafe(self._call(name, args, user, reason), loop)
        try:
            accepted, code, why, payload_json = fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            return CommandResult(
                False,
                "TIMEOUT",
                f"{self.device_id} did not answer {name} within {timeout_s:.1f} s "
                "(it may or may not have acted)",
            )
        except Exception as exc:  # noqa: BLE001 - transport / status errors
            return CommandResult(
                False,
                "COMM_LOST",
                f"{self.device_id}: {name} failed on the wire: {type(exc).__name__}: {exc}",
            )
        try:
            payload = json.loads(payload_json) if payload_json else {}
        except ValueError:
            payload = {}
        return CommandResult(
            bool(accepted), str(code), str(why), payload if isinstance(payload, dict) else {}
        )

    async def _call(self, name: str, args: dict[str, Any], user: str, reason: str) -> tuple[Any, ...]:
        from asyncua import ua

        client = self._client
        if client is None:
            raise ConnectionError("not connected")
        parent_id, method = self._methods[name]
        out = await client.get_node(parent_id).call_method(
            method,
            ua.Variant(json.dumps(args), ua.VariantType.String),
            ua.Variant(user or "", ua.VariantType.String),
            ua.Variant(reason or "", ua.VariantType.String),
        )
        if not isinstance(out, list) or len(out) < 4:
            raise ValueError(f"unexpected method outputs {out!r}")
        # the command changed the device: its new values arrive by subscription
        return tuple(out[:4])


class _Handler:
    def __init__(self, backend: OpcUaBackend) -> None:
        self.b = backend

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.b._on_change(node.nodeid, data.monitored_item.Value)
        self.b._notify()

    def status_change_notification(self, status: Any) -> None:
        log.warning("%s: subscription status change %s", self.b.device_id, status)
        self.b._connected = False
        self.b._sub_lost = str(status)
