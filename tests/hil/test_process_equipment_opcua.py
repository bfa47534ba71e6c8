"""OPC UA emulation of the process equipment (issue 14 item 1): ``cellctl emulate`` serves a
process-equipment unit like the other devices (one asyncua server, the contract's catalogue as
methods, readings as variables) and the OPC UA bridge backend drives it: the controller's own
interlock answers over OPC UA with its code. One unit (the incubator) to keep the suite short:
the emulator is generic over the contracts (the six were checked by hand, README)."""

from __future__ import annotations

import socket
import time

import pytest

from aseptic_cell.devices.opcua_backend import OpcUaBackend
from aseptic_cell.opcua.config import load_opcua_config

from .conftest import Emulator, write_opcua_yaml

pytestmark = [pytest.mark.hil, pytest.mark.timeout(240)]

DEVICES = {"INC1": "incubator"}


def _ports(n: int) -> list[int]:
    """Free ports in this module's range (48600-48699)."""
    out = []
    for p in range(48600, 48700):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        out.append(p)
        if len(out) == n:
            return out
    raise RuntimeError("no free ports in 48600-48699")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pe_opcua")
    path = write_opcua_yaml(tmp / "opcua.yaml", dict(zip(DEVICES, _ports(len(DEVICES)), strict=True)))
    emu = Emulator(path, list(DEVICES), tmp / "emulator.log", fault_methods=False).start()
    try:
        emu.wait_ready(180.0)
        yield load_opcua_config(path)
    finally:
        emu.stop()


def _backend(ocfg, dev):
    b = OpcUaBackend(device_id=dev, kind=DEVICES[dev], config=ocfg)
    b.connect(30.0)
    return b


def test_process_equipment_over_opcua(emulated):
    inc = _backend(emulated, "INC1")
    try:
        r = inc.latest()
        assert r is not None and r.values["temp_c"] == pytest.approx(37.0, abs=0.5)
        assert inc.command("assign_slot", {"slot": 4.0, "batch_id": "B1", "coi": "COI-AAAA01"}).accepted
        out = inc.command("load", {"slot": 4.0, "container_id": "C1", "coi": "COI-BBBB02"})
        assert not out.accepted and out.code == "INC_COI_MISMATCH", out
        assert inc.command("load", {"slot": 4.0, "container_id": "C1", "coi": "COI-AAAA01"}).accepted
        deadline = time.monotonic() + 10.0
        while inc.latest().values.get("slot.4.container_id") != "C1":
            assert time.monotonic() < deadline, "slot reading over OPC UA"
            time.sleep(0.05)
    finally:
        inc.close()
