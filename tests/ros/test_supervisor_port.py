"""RosCellPort (the supervisor's view of the device nodes): communication loss is judged in
wall time on the arrival of each node's signals messages, but never over time the supervisor
itself was not running (after its own stall the devices' messages are still queued)."""

from __future__ import annotations

import json
import time

import pytest
import rclpy
from std_msgs.msg import String

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.interlocks import SignalTable
from aseptic_cell.nodes.supervisor_node import RosCellPort
from aseptic_cell.supervisor.port import NODES

STALE_S = 2.0  # wall s; generous: consecutive calls must stay within STALE_S/2 even on a loaded machine


@pytest.fixture
def port():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("port_probe", context=ctx)
    try:
        yield RosCellPort(node, load_config(default_config_dir()), STALE_S)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _arrive(port: RosCellPort, n: str, **signals: object) -> None:
    port._on_signals(n, String(data=json.dumps({"comm_ok": True, "signals": signals})))  # noqa: SLF001


def test_silence_is_comm_loss_except_over_the_supervisors_own_stall(port):
    table = SignalTable()
    devices = port.node_devices
    for n in NODES:
        _arrive(port, n)
    _arrive(port, "isolator", **{"isolator.dp_pa": 45.0})
    port.refresh(table)
    assert not table.lost_sources and table.get("isolator.dp_pa").value == 45.0
    # the supervisor itself did not refresh for longer than stale/2 (a long callback): the
    # devices' silence over that time is its own, so nothing is declared lost yet...
    time.sleep(STALE_S * 1.5)
    port.refresh(table)
    assert not table.lost_sources
    # ...but on the next refresh, with the supervisor running, a node still silent is lost
    port.refresh(table)
    assert table.lost_sources == {devices[n] for n in NODES}
    # a node that speaks again is back (only that one); a node reporting comm_ok false is lost
    _arrive(port, "vhp")
    port.refresh(table)
    assert table.lost_sources == {devices[n] for n in NODES if n != "vhp"}
    port._on_signals("vhp", String(data=json.dumps({"comm_ok": False, "signals": {}})))  # noqa: SLF001
    port.refresh(table)
    assert devices["vhp"] in table.lost_sources


def test_a_node_that_never_spoke_is_lost_and_bad_messages_change_nothing(port):
    table = SignalTable()
    port.refresh(table)
    assert table.lost_sources == {port.node_devices[n] for n in NODES}
    _arrive(port, "isolator", **{"isolator.dp_pa": 45.0})
    port._on_signals("isolator", String(data="{not json"))  # noqa: SLF001
    port.refresh(table)
    assert port.node_devices["isolator"] not in table.lost_sources
    assert table.get("isolator.dp_pa").value == 45.0
