"""PackML Admin alarm and warning lists on the cell server (issue 18 item 4), in-process (the cell
server's address space built as ``python -m aseptic_cell.opcua.server`` builds it, no network):
``Admin.Alarm`` / ``Admin.Warning`` (PackMLAlarmDataType[]) and ``AlarmExtent`` / ``WarningExtent``
follow the active ISA-18.2 alarms (low priority = PackML warning), shelved ones are left out, and the
values encode as OPC UA binary (what a client receives)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import variant_from_binary, variant_to_binary

from aseptic_cell.opcua.server.app import CellServerApp, resolve_config
from aseptic_cell.opcua.server.testing import REPO

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


async def _scenario() -> dict:
    cfg, paths = resolve_config(None, str(REPO / "config"))
    app = CellServerApp(cfg, paths, ros=False)
    out: dict = {}
    try:
        model = await app.init_model()
        assert model.packml is not None
        t0 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)

        async def read() -> dict:
            return {k: await n.read_value() for k, n in model.packml.admin.items() if n is not None}

        out["initial"] = await read()
        await model.apply_alarms({"flood": False, "alarms": [
            {"alarm_id": "ISO1_DP_LOW", "source": "ISO1", "priority": 800, "state": "UNACK", "message": "dP low",
             "raised": t0},
            {"alarm_id": "VHP1_PPM", "source": "VHP1", "priority": 950, "state": "ACKED", "message": "ppm",
             "raised": t0},
            {"alarm_id": "AC1_DOOR_OPEN", "source": "AC1", "priority": 200, "state": "UNACK", "message": "door",
             "raised": t0},
            {"alarm_id": "ARM1_SLOW", "source": "ARM1", "priority": 300, "state": "SHELVED", "message": "slow",
             "raised": t0},
        ]})
        out["active"] = await read()
        dv = await model.packml.admin["Alarm"].read_data_value()
        out["roundtrip"] = variant_from_binary(Buffer(variant_to_binary(dv.Value))).Value
        await model.apply_alarms({"flood": False, "alarms": []})
        out["cleared"] = await read()
    finally:
        app.users.close()
    return out


def test_packml_admin_lists_the_active_alarms_and_warnings():
    out = asyncio.run(asyncio.wait_for(_scenario(), 110))
    assert out["initial"] == {"Alarm": [], "AlarmExtent": 0, "Warning": [], "WarningExtent": 0}
    a = out["active"]
    assert a["AlarmExtent"] == 2 and a["WarningExtent"] == 1, a  # the shelved one is not listed
    assert [(x.ID, x.Message, x.Category, x.Trigger) for x in a["Alarm"]] == [
        (1, "ISO1_DP_LOW: dP low", 800, True), (2, "VHP1_PPM: ppm", 950, True)]
    assert [(x.ID, x.Message, x.Category) for x in a["Warning"]] == [(1, "AC1_DOOR_OPEN: door", 200)]
    assert [type(x).__name__ for x in out["roundtrip"]] == ["PackMLAlarmDataType"] * 2
    assert [x.Message for x in out["roundtrip"]] == [x.Message for x in a["Alarm"]]
    assert out["cleared"] == {"Alarm": [], "AlarmExtent": 0, "Warning": [], "WarningExtent": 0}
