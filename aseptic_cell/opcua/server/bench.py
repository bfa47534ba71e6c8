"""Cell OPC UA server under subscription load (issue 5 report keys ``server_notifications_per_s``,
``server_p99_ms``).

Set-up: the cell server in its own process (ROS bridge on), a fake supervisor in this process
publishing the four device states and the batch status at ``--rate`` Hz (the device nodes publish
at 10 Hz) with every numeric field changing, and ``--clients`` asyncua clients (Basic256Sha256 /
SignAndEncrypt, user op1), each subscribed to every variable under Supervisor and Devices at a
``--publishing-ms`` publishing interval (sampling 0 = on change).

Latency = client callback wall time - the value's SourceTimestamp (stamped by the server when it
writes the changed value): variable change -> client callback, including the wait for the next
publish cycle. ``e2e`` adds the ROS hop: fake publish time (carried in PhaseProgress) -> callback.

    ROS_DOMAIN_ID=125 .venv/bin/python benchmarks/opcua_server.py [--json]
    ROS_DOMAIN_ID=125 .venv/bin/python benchmarks/opcua.py      (calls :func:`run`)
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .testing import (
    FakeSupervisor,
    ServerProcess,
    client_for,
    make_client_identity,
    secure,
    trust,
)

NS_URI = "urn:aseptic-cell:opcua:cell"
CHANGES_PER_TICK = 23
"""Variables the publisher below changes per tick (isolator 7, VHP 5, autoclave 4, arm 1, PhaseProgress 1,
and the 5 LastUpdate stamps)."""


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))]


class _Handler:
    def __init__(self, stats: dict[str, Any], probe: Any) -> None:
        self.stats, self.probe = stats, probe

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        now = time.time()
        st = self.stats
        if not st["measuring"]:
            return
        st["n"] += 1
        dv = data.monitored_item.Value
        ts = dv.SourceTimestamp or dv.ServerTimestamp
        if ts is not None:
            st["lat"].append((now - ts.timestamp()) * 1000.0)
        if node.nodeid == self.probe and isinstance(val, float) and val > 1e9:
            st["e2e"].append((now - val) * 1000.0)


async def _collect_variables(client: Any, ns: int) -> list[Any]:
    from asyncua import ua

    from aseptic_cell.opcua.uatyping import node_id

    out: list[Any] = []

    async def walk(node: Any) -> None:
        for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
            cls = await child.read_node_class()
            if cls == ua.NodeClass.Variable:
                if child.nodeid.NamespaceIndex == ns:
                    out.append(child)
            elif cls == ua.NodeClass.Object:
                await walk(child)

    for path in ("ATMPCell01.Supervisor", "ATMPCell01.Devices"):
        await walk(client.get_node(node_id(path, ns)))
    return out


def run_server_benchmark(
    *,
    clients: int = 5,
    publishing_ms: float = 50.0,
    rate_hz: float = 10.0,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    workdir: Path | None = None,
    domain_id: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the figures (keys ``server_notifications_per_s``, ``server_p99_ms``...)."""
    domain = domain_id if domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "125"))
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    tmp = tempfile.TemporaryDirectory(prefix="cellsrv-bench-") if workdir is None else None
    wd = Path(tmp.name) if tmp else Path(workdir)  # type: ignore[arg-type]
    ident = make_client_identity(wd / "client", "bench")
    server = ServerProcess(wd / "srv", ros=True)
    trust(server.pki_dir, ident)
    fake = FakeSupervisor(domain)
    stop = threading.Event()
    ticks = [0]

    def publisher() -> None:
        period = 1.0 / rate_hz
        nxt = time.monotonic()
        while not stop.is_set():
            k = ticks[0] = ticks[0] + 1
            x = k * 1e-3
            fake.device(
                "isolator",
                device_id="ISO1",
                lifecycle_state="active",
                comm_ok=True,
                dp_pa=45 + x,
                particles_0_5_per_m3=100 + k,
                particles_5_0_per_m3=k % 7 + 0.5,
                airflow_m_s=0.45 + x,
                temp_c=21 + x,
                rh_pct=40 + x,
                h2o2_ppm=x,
            )
            fake.device(
                "vhp",
                device_id="VHP1",
                lifecycle_state="active",
                comm_ok=True,
                phase_elapsed_s=x * 100,
                h2o2_ppm=300 + x,
                h2o2_mg_l=0.5 + x,
                rh_pct=30 + x,
                injected_g=k * 0.01,
            )
            fake.device(
                "autoclave",
                device_id="AC1",
                lifecycle_state="active",
                comm_ok=True,
                chamber_t_c=121 + x,
                chamber_p_kpa=205 + x,
                load_probe_t_c=120.5 + x,
                f0_min=x * 10,
            )
            fake.device(
                "arm", device_id="ARM1", lifecycle_state="active", comm_ok=True, tcp_speed_m_s=0.1 + x
            )
            fake.batch(
                batch_id="B-BENCH",
                recipe_id="R",
                recipe_version=1,
                state="RUNNING",
                phase_progress=time.time(),
            )
            nxt += period
            stop.wait(max(0.0, nxt - time.monotonic()))

    stats: dict[str, Any] = {"n": 0, "lat": [], "e2e": [], "measuring": False}

    async def bench() -> dict[str, Any]:
        from asyncua import ua

        from aseptic_cell.opcua.uatyping import node_id

        cs = []
        for _ in range(clients):
            c = client_for(
                server.endpoint, ident, server.server_cert, user="op1", password="op1-demo-2026", timeout_s=30
            )
            await secure(c)
            await c.connect()
            cs.append(c)
        ns = await cs[0].get_namespace_index(NS_URI)
        probe = node_id("ATMPCell01.Supervisor.ActiveBatch.PhaseProgress", ns)
        n_vars = 0
        for c in cs:
            nodes = await _collect_variables(c, ns)
            n_vars = len(nodes)
            sub = await c.create_subscription(
                ua.CreateSubscriptionParameters(
                    RequestedPublishingInterval=publishing_ms,
                    RequestedLifetimeCount=1000,
                    RequestedMaxKeepAliveCount=20,
                    MaxNotificationsPerPublish=10000,
                    PublishingEnabled=True,
                ),
                _Handler(stats, probe),
            )
            await sub.subscribe_data_change(nodes, sampling_interval=0, queuesize=10)
        t_pub = threading.Thread(target=publisher, daemon=True)
        t_pub.start()
        await asyncio.sleep(warmup_s)
        ticks0 = ticks[0]
        stats["measuring"] = True
        t0 = time.monotonic()
        await asyncio.sleep(duration_s)
        stats["measuring"] = False
        elapsed = time.monotonic() - t0
        published = ticks[0] - ticks0
        stop.set()
        for c in cs:
            try:
                await c.disconnect()
            except Exception:  # noqa: BLE001
                pass
        rss = server.rss_bytes()
        lat, e2e = stats["lat"], stats["e2e"]
        return {
            "server_notifications_per_s": round(stats["n"] / elapsed, 1),
            "server_p50_ms": round(_pct(lat, 50), 1),
            "server_p99_ms": round(_pct(lat, 99), 1),
            "server_max_ms": round(max(lat, default=float("nan")), 1),
            "server_offered_per_s": round(clients * CHANGES_PER_TICK * published / elapsed, 1),
            "server_e2e_p50_ms": round(_pct(e2e, 50), 1),
            "server_e2e_p99_ms": round(_pct(e2e, 99), 1),
            "server_clients": clients,
            "server_publishing_ms": publishing_ms,
            "server_monitored_items_per_client": n_vars,
            "server_ros_rate_hz": round(published / elapsed, 1),
            "server_duration_s": round(elapsed, 1),
            "server_rss_mb": round(rss / 2**20, 1),
        }

    server.start(timeout_s=90)
    try:
        deadline = time.monotonic() + 20
        while fake.subscribers("batch") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        return asyncio.run(bench())
    finally:
        stop.set()
        server.stop()
        fake.close()
        if tmp:
            tmp.cleanup()


def run(quick: bool = False) -> dict[str, Any]:
    """Hook for ``benchmarks/opcua.py``: 5 clients at 50 ms, device-node rate (10 Hz)."""
    return run_server_benchmark(duration_s=4.0 if quick else 10.0, warmup_s=1.0 if quick else 2.0)


def _proc_cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run_flood_benchmark(sessions: int = 10, workdir: Path | None = None) -> dict[str, Any]:
    """The cell server under a connection flood (issue 12 item 6; keys ``flood_*``).

    ``sessions`` secure sessions (Basic256Sha256/SignAndEncrypt, op1) are opened one after another,
    first on an idle server, then while idle sockets are held open: 64 from 8 other loopback
    addresses (8 each, within the per-address limit, so really held), 64 from the client's own
    address and 200 from one more address (both churning against the per-address limit,
    reopened at up to 100/s each). Reported: session open time p50/max with and without the
    flood, sessions that failed, flood sockets held when measured, connections the server closed
    (evictions + deadlines) per second, and the server's CPU share during the flood.
    """
    from .testing import IdleFlood

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cell-opcua-flood-")
        workdir = Path(tmp.name)
    server = ServerProcess(workdir, ros=False)
    try:
        ident = make_client_identity(workdir / "client", "flood-bench")
        server.start(timeout_s=90)
        trust(server.pki_dir, ident)

        async def open_sessions() -> tuple[list[float], int]:
            times, failed = [], 0
            for _ in range(sessions):
                c = client_for(server.endpoint, ident, server.server_cert, user="op1", password="op1-demo-2026")
                await secure(c)
                t0 = time.perf_counter()
                try:
                    await c.connect()
                except Exception:  # noqa: BLE001 - counted
                    failed += 1
                    continue
                times.append((time.perf_counter() - t0) * 1000)
                await c.disconnect()
            return times, failed

        base, base_failed = asyncio.run(open_sessions())
        assert server.proc is not None
        floods = [
            IdleFlood("127.0.0.1", server.port, 8, source=f"127.0.0.{10 + i}", max_rate=50) for i in range(8)
        ]
        churn = [
            IdleFlood("127.0.0.1", server.port, 64, max_rate=100),
            IdleFlood("127.0.0.1", server.port, 200, source="127.0.0.9", max_rate=100),
        ]
        for f in [*floods, *churn]:
            f.start()
        time.sleep(0.3)
        held = sum(f.open_count() for f in floods)
        cpu0, t0 = _proc_cpu_s(server.proc.pid), time.monotonic()
        closed0 = sum(f.closed for f in [*floods, *churn])
        under, under_failed = asyncio.run(open_sessions())
        elapsed = time.monotonic() - t0
        cpu = _proc_cpu_s(server.proc.pid) - cpu0
        closed = sum(f.closed for f in [*floods, *churn]) - closed0
        for f in [*floods, *churn]:
            f.stop()
        return {
            "flood_sessions": sessions,
            "flood_idle_session_open_p50_ms": round(_pct(base, 50), 1),
            "flood_idle_session_open_max_ms": round(max(base, default=float("nan")), 1),
            "flood_idle_sessions_failed": base_failed,
            "flood_sockets_held_other_addresses": held,
            "flood_sockets_offered": 64 + 64 + 200,
            "flood_session_open_p50_ms": round(_pct(under, 50), 1),
            "flood_session_open_max_ms": round(max(under, default=float("nan")), 1),
            "flood_sessions_failed": under_failed,
            "flood_server_closes_per_s": round(closed / elapsed, 1),
            "flood_server_cpu_pct": round(100 * cpu / elapsed, 1),
            "flood_server_rss_mb": round(server.rss_bytes() / 2**20, 1),
        }
    finally:
        server.stop()
        if tmp:
            tmp.cleanup()
