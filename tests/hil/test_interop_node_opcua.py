"""Interop: the bridge (autoclave device node, ``hardware: opcua``) drives a device served by an
independent stack — node-opcua 2.182.2 (``interop/device_server.js``, run with ``node``) —
commands and readings round trip, the device's and the node's interlocks, NaN, and a lost
server ending in the safe state."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time

import pytest

from .conftest import (
    ROOT,
    _pdeathsig_term,
    emulator_call,
    free_ports,
    opcua_graph,
    record_events,
    write_opcua_yaml,
)

pytestmark = [pytest.mark.hil]
SERVER_JS = ROOT / "interop" / "device_server.js"


@pytest.fixture(scope="module")
def njs_cell(tmp_path_factory):
    from aseptic_cell.client import CellClient
    from aseptic_cell.config import default_config_dir
    from aseptic_cell.launcher import CellProcesses

    if shutil.which("node") is None or not (ROOT / "node_modules" / "node-opcua").is_dir():
        pytest.skip("node / node_modules/node-opcua not installed (make venv)")
    tmp = tmp_path_factory.mktemp("njs")
    (port,) = free_ports(1)
    endpoint = f"opc.tcp://127.0.0.1:{port}/aseptic/AC1"
    log = open(tmp / "device_server.log", "ab")
    # the server's PKI folder (its self-signed certificate) is shared between runs: generating
    # a key pair costs tens of seconds on a loaded machine
    proc = subprocess.Popen(
        ["node", str(SERVER_JS), "--port", str(port), "--device", "AC1", "--door-move-s", "0.5"],
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=_pdeathsig_term,  # dies with pytest even if a timeout skips the teardown
    )
    procs = client = None
    try:
        box: dict = {}

        def read_ready() -> None:  # node-opcua prints its own warnings on stdout too
            for line in iter(proc.stdout.readline, b""):
                if line.startswith(b"{"):
                    box["line"] = line
                    return

        t = threading.Thread(target=read_ready, daemon=True)
        t.start()
        t.join(90.0)
        assert box.get("line") and json.loads(box["line"])["ready"], (
            f"node-opcua server not ready (see {tmp})"
        )
        node_yaml = write_opcua_yaml(tmp / "opcua.yaml", {"AC1": port})
        specs = opcua_graph(default_config_dir(), ["autoclave", "lifecycle_manager"])
        procs = CellProcesses(
            specs, env=dict(os.environ, ASEPTIC_CELL_OPCUA_CONFIG=str(node_yaml)), log_dir=tmp / "logs"
        ).start()
        client = CellClient(domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        client.wait_state(
            "autoclave",
            lambda s: s.comm_ok and s.lifecycle_state == "active",
            120.0,
            "autoclave active on the node-opcua server",
        )
        yield client, proc, endpoint, tmp
    finally:
        if client is not None:
            client.close()
        if procs is not None:
            procs.stop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.mark.timeout(120)
def test_bridge_drives_a_node_opcua_device(njs_cell):
    from aseptic_cell.records import BatchRecord

    c, proc, endpoint, tmp = njs_cell
    s = c.state("autoclave")
    assert s.chamber_t_c == pytest.approx(21.0) and s.door_load_gasket_ok and s.door_unload_gasket_ok
    # commands round trip: open → the device moves → the reading comes back by subscription
    assert c.door("autoclave", "autoclave_load", "open", user="op1", reason="load").accepted
    c.wait_state("autoclave", lambda s: s.door_load_open, 15.0, "load door open (node-opcua)")
    r = c.door("autoclave", "autoclave_unload", "open", user="op1")
    assert not r.accepted and r.code == "AC_OTHER_DOOR_OPEN", r
    assert c.door("autoclave", "autoclave_load", "close", user="op1").accepted
    c.wait_state(
        "autoclave", lambda s: s.door_load_gasket_ok and not s.door_load_open, 15.0, "load door sealed"
    )
    r = c.door("autoclave", "autoclave_unload", "open", user="op1")
    assert not r.accepted and r.code == "AC_UNLOAD_NOT_RELEASED", r
    # a refusal by the device itself comes back as the device's code
    r = c.command("autoclave", "start_program", {"program_id": "P134-3", "load_id": "L1"}, user="op1")
    assert not r.accepted and r.code == "NOT_SUPPORTED", r
    # NaN from the node-opcua server stays NaN and is unsafe
    ok, *_ = emulator_call(endpoint, "AC1", "InjectFault", "sensor:chamber_t_c", '{"mode": "nan"}')
    assert ok
    c.wait_state("autoclave", lambda s: math.isnan(s.chamber_t_c), 10.0, "NaN chamber T")
    r = c.door("autoclave", "autoclave_load", "open", user="op1")
    assert not r.accepted and r.code == "AC_HOT", r
    emulator_call(endpoint, "AC1", "ClearFault", "sensor:chamber_t_c")
    c.wait_state("autoclave", lambda s: s.chamber_t_c == pytest.approx(21.0), 10.0, "chamber T back")
    # the server dies: safe state, alarm, refusals
    proc.kill()
    proc.wait(10)
    c.wait_state("autoclave", lambda s: not s.comm_ok and "latched" in s.lifecycle_state, 20.0, "comm lost")
    c.wait_for(lambda: any(a.alarm_id == "AC1_COMM_LOSS" for a in c.alarms), 10.0, "AC1_COMM_LOSS")
    r = c.door("autoclave", "autoclave_load", "open", user="op1")
    assert not r.accepted and r.code == "LATCHED", r

    class _Wall:
        def now(self) -> float:
            return time.time()

    with BatchRecord(tmp / "njs.sqlite", _Wall()) as rec:
        n = record_events(rec, "HIL-NJS", list(c.events))
        report = rec.verify()
    assert n > 0 and report.ok, report
