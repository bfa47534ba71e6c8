"""Each alarm's consequence and operator response (alarms.yaml rationalisation, ISA-18.2
[ISA18.2]) are shown in the HMI alarm list and on the OPC UA cell server (issue 13 item 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.hmi.plant import plant_info
from aseptic_cell.opcua.server.model import CellAddressSpace

REPO = Path(__file__).resolve().parents[2]


def test_hmi_alarm_list_shows_consequence_and_response():
    cfg = load_config(default_config_dir())
    info = plant_info(default_config_dir())
    for a in cfg.alarms.alarms:
        r = info["alarms"][a.id]
        assert (r["consequence"], r["response"], r["priority"]) == (a.consequence, a.response, a.priority)
    js = (REPO / "aseptic_cell" / "hmi" / "static" / "app.js").read_text()
    body = js[js.index("function renderAlarms"):js.index("function renderEvents")]
    assert "S.plant.alarms" in body and "alarm-consequence" in body and "alarm-response" in body
    assert 'permitted("alarm.unshelve")' in body  # the Unshelve button follows users.yaml (item 20)


def test_opcua_cell_server_shows_consequence_and_response():
    """CellAddressSpace.apply_alarms writes Consequence and Response beside each active alarm
    (the address-space calls are recorded; the server round trip is tests/hil/test_cell_server.py)."""
    cfg = load_config(default_config_dir())
    d = next(a for a in cfg.alarms.alarms if a.id == "ISO1_PART_05_ACTION")
    model = CellAddressSpace.__new__(CellAddressSpace)
    written: dict[str, object] = {}
    model._alarm_nodes, model.vars, model.nodes = {}, {}, {"Alarms.Active": object()}
    model.conditions = None  # no A&C event emitter in this unit test (issue 18: tests/hil/test_cell_server.py)
    model.packml = None  # nor PackML Admin (tests/hil/test_packml_admin.py)

    async def obj(parent, path, name, **kw):
        return object()

    async def var(parent, path, name, vt, group, **kw):
        written.setdefault(path, None)

    async def set_(path, value, now):
        written[path] = value

    model._obj, model._var, model._set, model._touch = obj, var, set_, lambda group: None
    asyncio.run(model.apply_alarms({"flood": False, "alarms": [
        {"alarm_id": d.id, "source": "ISO1", "priority": d.effective_severity, "state": "UNACK", "message": "x"}]}))
    base = "Alarms.Active.ISO1_PART_05_ACTION"
    assert written[f"{base}.Consequence"] == d.consequence and written[f"{base}.Response"] == d.response
    assert written[f"{base}.Priority"] == d.priority
