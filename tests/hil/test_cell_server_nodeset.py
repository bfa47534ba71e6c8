"""The committed NodeSet2 export (docs/opcua_cell_server.NodeSet2.xml) is what the server builds,
parses, and holds the key nodes of the cell model."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aseptic_cell.opcua.server.app import CellServerApp, resolve_config
from aseptic_cell.opcua.server.testing import REPO

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]

COMMITTED = REPO / "docs" / "opcua_cell_server.NodeSet2.xml"
UA = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"


def test_committed_nodeset_matches_a_fresh_export(tmp_path: Path):
    """Same as ``python -m aseptic_cell.opcua.server --export-nodeset``, in-process (no network)."""
    fresh = tmp_path / "cell.xml"

    async def export() -> None:
        cfg, paths = resolve_config(None, str(REPO / "config"))
        app = CellServerApp(cfg, paths, ros=False)
        try:
            await app.init_model()
            await app.export_nodeset(fresh)
        finally:
            app.users.close()

    asyncio.run(export())
    assert fresh.read_bytes() == COMMITTED.read_bytes(), (
        "the address space changed: regenerate with "
        "`python -m aseptic_cell.opcua.server --export-nodeset docs/opcua_cell_server.NodeSet2.xml`"
    )


def _type_of(node) -> str:
    for ref in node.iter(f"{UA}Reference"):
        if ref.get("ReferenceType") == "HasTypeDefinition":
            return ref.text or ""
    return ""


def test_nodeset_has_the_cell_model():
    root = ET.parse(COMMITTED).getroot()
    uris = [u.text for u in root.iter(f"{UA}Uri")]
    assert uris == ["http://opcfoundation.org/UA/PackML/", "urn:aseptic-cell:opcua:cell"]
    ids = {n.get("NodeId"): n for n in root if n.get("NodeId")}
    # the cell's state machine is the standard PackML one (issue 18): instance of PackMLBaseObjectType
    # (ns=1;i=6 in the exported file's numbering) with a PackMLBaseStateMachineType (ns=1;i=3)
    packml = ids["ns=2;s=ATMPCell01.PackML"]
    assert _type_of(packml) == "ns=1;i=6"
    assert _type_of(ids["ns=2;s=ATMPCell01.PackML.BaseStateMachine"]) == "ns=1;i=3"
    assert _type_of(ids["ns=2;s=ATMPCell01.PackML.BaseStateMachine.MachineState.ExecuteState"]) == "ns=1;i=1"
    for child in ("Admin", "Status", "Status.UnitModeCurrent", "Status.MachSpeed", "Status.CurMachSpeed",
                  "BaseStateMachine.CurrentState.Id"):
        assert f"ns=2;s=ATMPCell01.PackML.{child}" in ids, child
    ids = {k.replace("ns=2;", "ns=1;"): v for k, v in ids.items()}  # the cell's own nodes below
    for path in (
        "ATMPCell01",
        "ATMPCell01.Identification",
        "ATMPCell01.Supervisor.CurrentState",
        "ATMPCell01.Supervisor.ActiveBatch.Phase",
        "ATMPCell01.Supervisor.ActiveBatch.RecipeVersion",
        "ATMPCell01.Alarms.ActiveCount",
        "ATMPCell01.Devices.ISO1.DifferentialPressure_Pa",
        "ATMPCell01.Devices.ARM1.ProtectiveStop",
        "ATMPCell01.Interlocks.IL-01[door=A,other=B].State",
    ):
        assert f"ns=1;s={path}" in ids, path
    methods = {n.get("BrowseName").split(":", 1)[1] for n in root.iter(f"{UA}UAMethod")}
    assert methods == {
        "Start",
        "Hold",
        "Unhold",
        "Suspend",
        "Unsuspend",
        "Stop",
        "Abort",
        "Reset",
        "ReloadConfiguration",
    }
    # e-signature commands take the password as an input argument
    abort_args = [
        n
        for n in root.iter(f"{UA}UAVariable")
        if n.get("ParentNodeId") == "ns=2;s=ATMPCell01.Supervisor.Abort"
        and n.get("BrowseName") == "0:InputArguments"
    ][0]
    names = [e.text for e in abort_args.iter("{http://opcfoundation.org/UA/2008/02/Types.xsd}Name")]
    assert names == ["Password", "Reason"]
