"""``cellctl run``: start the cell's node graph as real OS processes and supervise it.

One process per node (``default_graph``), parameters from ``config/``; each in its own
process group. Nothing is restarted silently: a node that exits is reported loudly and the
lifecycle manager drives its dependants to their safe state; recovery is an operator action.
On Ctrl-C / SIGTERM every process group is stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import time
from typing import Any

from .client import CellClient


def _fmt_state(client: CellClient) -> str:
    iso, vhp, ac, arm = (client.state(n) for n in ("isolator", "vhp", "autoclave", "arm"))
    parts = []
    if iso is not None:
        parts.append(f"isolator dP {iso.dp_pa:5.1f} Pa {iso.decon_status}{'' if iso.comm_ok else ' COMM LOST'}")
    if vhp is not None:
        parts.append(f"VHP {vhp.phase} {vhp.h2o2_ppm:.1f} ppm")
    if ac is not None:
        parts.append(f"autoclave {ac.phase} {ac.chamber_t_c:.1f} C")
    if arm is not None:
        parts.append(f"arm {'moving' if arm.moving else 'park' if arm.at_park else 'decon' if arm.at_decon else 'idle'}"
                     f"{' PSTOP' if arm.protective_stop else ''}")
    return " | ".join(parts) or "(no device state yet)"


def run_cell(config_dir: str, *, speed: float, hardware: str = "sim", extra: list[Any] | None = None,
             status_period_s: float = 5.0, duration_s: float | None = None, log_dir: str | None = None,
             emulate: bool = False, arm: str = "sim") -> int:
    """Run the graph until interrupted (or for ``duration_s``); returns 0 on a clean stop."""
    from .launcher import CellProcesses, process_equipment_enabled, wait_for_nodes
    from .nodes.graph import default_graph, emulator_spec, service_specs

    if extra is None:
        record_dir = os.path.join(os.getcwd(), "records")
        os.makedirs(record_dir, exist_ok=True)
        extra = service_specs(config_dir, record_dir=record_dir)
    specs = default_graph(config_dir, speed=speed, hardware=hardware, extra=extra,
                          process_equipment=process_equipment_enabled(config_dir))
    if hardware != "sim":  # no /clock: every node on wall time
        from dataclasses import replace

        specs = [replace(s, params={**s.params, "use_sim_time": False}) if "use_sim_time" in s.params else s
                 for s in specs]
    if emulate:
        specs = [emulator_spec(config_dir, speed)] + specs
    if arm != "sim":  # the arm's motion on a physics engine (issue 16)
        from .physics.graph import with_arm_engine

        specs = with_arm_engine(specs, config_dir, arm, speed=speed)
    log_dir = log_dir or tempfile.mkdtemp(prefix="aseptic_cell-run-")
    stop = {"flag": False}

    def _on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"aseptic_cell: starting {len(specs)} node processes ({hardware} hardware, speed "
          f"{'max' if math.isinf(speed) else f'{speed:g}x'}); logs in {log_dir}", flush=True)
    t0 = time.monotonic()
    code = 0
    try:
        with CellProcesses(specs, log_dir=log_dir, env=dict(os.environ), autostart=False) as procs:
            try:
                if emulate:  # the emulated hardware first: device nodes connect to it on configure
                    from .launcher import wait_for_output

                    procs.start_one(specs[0])
                    wait_for_output(procs, "emulator", '"ready": true', 180.0)
                    print("emulated hardware ready", flush=True)
                    for spec in specs[1:]:
                        procs.start_one(spec)
                else:
                    procs.start()
                wait_for_nodes([s for s in specs if s.argv is None], timeout_s=120.0,
                               check=lambda: _raise_if_dead(procs))
            except (TimeoutError, RuntimeError) as exc:
                print(f"bring-up FAILED: {exc}", flush=True)
                return 1
            print(f"graph ACTIVE after {time.monotonic() - t0:.1f} s: {', '.join(s.name for s in specs)}", flush=True)
            for line in _endpoints(config_dir, specs):
                print(line, flush=True)
            print("Ctrl-C stops the cell.", flush=True)
            client = CellClient()
            try:
                last = 0.0
                end = math.inf if duration_s is None else time.monotonic() + duration_s
                while not stop["flag"] and time.monotonic() < end:
                    for name, rc in procs.poll():
                        print(f"!! {name} exited with code {rc}; NOT restarted (the lifecycle manager drives its "
                              "dependants safe; recovery is an operator action)", flush=True)
                        code = 1
                    if time.monotonic() - last >= status_period_s:
                        last = time.monotonic()
                        print(f"[{time.strftime('%H:%M:%S')}] {_fmt_state(client)}", flush=True)
                    time.sleep(0.2)
            finally:
                client.close()
            exits = procs.stop()
            print(f"stopped: {exits}", flush=True)
            if any(rc != 0 for rc in exits.values()):
                code = 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return code


def _endpoints(config_dir: str, specs: list[Any]) -> list[str]:
    """Where the operator and MES/SCADA connect."""
    from pathlib import Path

    names = {s.name for s in specs}
    out = []
    if "hmi" in names:
        try:
            from .hmi.config import load_hmi_config

            h = load_hmi_config(Path(config_dir) / "hmi.yaml")
            out.append(f"operator HMI: http://{h.host}:{h.port}/")
        except Exception as exc:  # noqa: BLE001 - a display problem must not stop the cell
            out.append(f"operator HMI: (address unknown: {exc})")
    if "opcua_server" in names:
        try:
            from .opcua.server.config import load_server_config

            cfg, _paths = load_server_config(Path(config_dir) / "opcua_server.yaml")
            out.append(f"OPC UA cell server (Basic256Sha256 SignAndEncrypt): {cfg.endpoint}")
        except Exception as exc:  # noqa: BLE001
            out.append(f"OPC UA cell server: (endpoint unknown: {exc})")
    return out


def _raise_if_dead(procs: Any) -> None:
    dead = procs.poll()
    if dead:
        raise RuntimeError(f"process(es) exited during bring-up: {dead}")
