"""Issue 12, the attacks on the command plane, by a rogue process on the cell's DDS domain.

A real rogue rclpy node (``helpers/rogue.py``, its own process, no key of the cell) calls the
device and operator services of the real graph (sim world, device nodes, lifecycle manager,
supervisor as separate processes). Every attack is refused, nothing moves, and the batch
record never shows an unauthenticated actor: refusals are recorded with actor ``system`` and
the claimed user only in the payload; forged device events never reach it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aseptic_cell.auth import AuthError, UserDirectory
from aseptic_cell.auth.lockout import LoginGuard
from aseptic_cell.client import CellClient
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import default_graph
from aseptic_cell.nodes.supervisor_node import supervisor_spec

pytestmark = pytest.mark.timeout(300)

ROGUE = Path(__file__).resolve().parent / "helpers" / "rogue.py"
DC = "cell_interfaces.srv.DeviceCommand"
USERS = {u.id for u in load_config(default_config_dir()).users.users}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    cfg_dir = str(default_config_dir())
    rec = tmp_path_factory.mktemp("records")
    specs = default_graph(cfg_dir, speed=float("inf"), extra=[supervisor_spec(cfg_dir, str(rec))])
    with CellProcesses(specs, env=dict(os.environ), log_dir=tmp_path_factory.mktemp("logs")) as procs:
        wait_for_nodes(specs, timeout_s=240.0, check=lambda: procs.poll() and pytest.fail(f"died: {procs.poll()}"))
        client = CellClient()
        try:
            for n in ("isolator", "vhp", "autoclave", "arm"):
                client.wait_state(n, lambda s: s.comm_ok and s.lifecycle_state == "active", 60.0)
            yield client, rec, tmp_path_factory.mktemp("rogue"), procs
        finally:
            client.close()
            procs.stop()


class _Wall:
    def now(self) -> float:
        import time

        return time.time()


def rogue(tmp: Path, plan: list[dict]) -> list[dict]:
    """Run the plan in a rogue process that has no key (an empty security directory)."""
    (tmp / "plan.json").write_text(json.dumps(plan))
    empty = tmp / "no-keys"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "ASEPTIC_CELL_SECURITY_DIR": str(empty)}
    env.pop("ASEPTIC_CELL_CLIENT_PRINCIPAL", None)
    out = subprocess.run([sys.executable, str(ROGUE), str(tmp / "plan.json")], env=env, capture_output=True,
                         text=True, timeout=180, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def svc(name: str, type_: str = DC, forge: str = "", **fields) -> dict:
    return {"kind": "service", "type": type_, "name": name, "fields": fields, "forge": forge}


def refused(r: dict, code: str = "UNAUTHENTICATED") -> bool:
    return r["answered"] and not r["accepted"] and (not code or r["code"] == code)


def _record_rows(rec: Path) -> list[tuple]:
    rows = []
    for db in rec.glob("*.db"):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows += con.execute("SELECT kind, actor, role, action, reason, payload FROM entries").fetchall()
        finally:
            con.close()
    return rows


def test_every_attack_of_a_rogue_node_is_refused_and_never_recorded_as_its_actor(cell):
    from cell_interfaces.action import RunBatch
    from cell_interfaces.srv import DeviceCommand

    client, rec, tmp, _procs = cell
    door = json.dumps({"door": "A"})
    # a valid command the bench sends (accepted), captured as it went over the wire
    captured = DeviceCommand.Request(command="close_door", args_json=door, user="sup1", reason="captured")
    client.sign("/cell/isolator/command", captured)
    assert client.call(DeviceCommand, "/cell/isolator/command", captured).accepted
    cap = {k: getattr(captured, k) for k in ("device_id", "command", "args_json", "user", "reason", "auth")}
    op = DeviceCommand.Request(device_id="isolator", command="close_door", args_json=door, user="sup1", reason="x")
    client.sign("/cell/operate", op)
    assert client.call(DeviceCommand, "/cell/operate", op).accepted
    cap_op = {k: getattr(op, k) for k in ("device_id", "command", "args_json", "user", "reason", "auth")}

    recipe_file = str(next((Path(default_config_dir()) / "recipes").glob("*.yaml")))
    r = rogue(tmp, [
        # 1. /cell/operate as "sup1" with no password (and with a forged front-end envelope)
        svc("/cell/operate", device_id="isolator", command="open_door", args_json=door, user="sup1"),
        svc("/cell/operate", forge="hmi", device_id="isolator", command="open_door", args_json=door, user="sup1"),
        # 2. the device directly, as "mallory" (every service of the node, and one forged as supervisor)
        svc("/cell/isolator/command", command="open_door", args_json=door, user="mallory"),
        svc("/cell/isolator/command", forge="supervisor", command="open_door", args_json=door, user="mallory"),
        svc("/cell/isolator/door", "cell_interfaces.srv.DoorCommand", door="hatch_a", command="open",
            user="mallory"),
        # 3. safe_state as "mallory"
        svc("/cell/arm/command", command="safe_state", args_json="{}", user="mallory"),
        # 5. replays of captured valid commands: same device, another device, the operator service
        svc("/cell/isolator/command", **cap),
        svc("/cell/vhp/command", **cap),
        svc("/cell/operate", **cap_op),
        # 4. RunBatch with a filesystem path, unsigned
        {"kind": "action", "type": "cell_interfaces.action.RunBatch", "name": "/cell/batch/run",
         "fields": {"recipe_id": recipe_file, "batch_id": "EVIL-1", "user": "sup1"}},
        # a device action directly
        {"kind": "action", "type": "cell_interfaces.action.RunCycle", "name": "/cell/vhp/run_cycle",
         "fields": {"program_id": "VHP-ISO-STD", "batch_id": "mallory"}},
        # forged device events for the record: an intervention by mallory, a cycle PASS
        {"kind": "publish", "type": "std_msgs.msg.String", "name": "/cell/events", "fields": {"data": json.dumps(
            {"event": "recovered", "node": "arm", "device": "ARM1", "t": 1.0, "wall": 1.0, "user": "mallory",
             "reason": "forged"})}},
        {"kind": "publish", "type": "std_msgs.msg.String", "name": "/cell/events", "fields": {"data": json.dumps(
            {"event": "cycle_result", "node": "vhp", "device": "VHP1", "t": 1.0, "wall": 1.0, "user": "mallory",
             "result": "PASS", "run_id": "forged"})}},
    ])
    names = [x["name"] for x in r]
    assert all(x["answered"] for x in r), r
    for x in r[:6]:
        assert refused(x), x
    assert "replay" in r[6]["reason"], r[6]
    assert refused(r[6]) and refused(r[7]) and refused(r[8]) and "replay" in r[8]["reason"], r[6:9]
    assert not r[9]["accepted"] and r[9]["reason"].startswith("UNAUTHENTICATED"), r[9]
    assert not r[10]["accepted"], r[10]  # goal rejected
    names_types = client.node.get_service_names_and_types()
    assert not [n for n, _ in names_types if n.startswith(("/isolator/", "/arm/")) and "parameter" in n], \
        "device nodes offer no parameter services"
    assert names[0] == "/cell/operate"
    iso = client.state("isolator")
    assert not iso.hatch_door_a_open and not iso.hatch_door_b_open
    assert "latched" not in client.state("arm").lifecycle_state  # mallory's safe_state did nothing

    # 3b. the arm latched legitimately (as the lifecycle manager would), then mallory's
    #     unsigned recovery: refused, the arm stays latched
    assert client.command("arm", "safe_state", {}, user="sup1", reason="test").accepted
    client.wait_state("arm", lambda s: "latched" in s.lifecycle_state, 20.0, "arm latched")
    r = rogue(tmp, [svc("/cell/arm/recover", "cell_interfaces.srv.Recover", device_id="arm", user="mallory",
                        reason="unlatch")])
    assert r[0]["answered"] and not r[0]["accepted"] and "unauthenticated" in r[0]["reason"], r
    client.wait_for(lambda: "latched" in client.state("arm").lifecycle_state, 2.0, "arm still latched")
    assert client.recover("arm", user="sup1", reason="test done").accepted  # the signed path works

    # 4b. RunBatch with a path, authenticated: refused, and the reply does not tell whether it exists
    replies = []
    for path in (recipe_file, recipe_file + ".missing.yaml"):
        _ok, res = client.run_action(RunBatch, "/cell/batch/run",
                                     RunBatch.Goal(recipe_id=path, batch_id="B-PATH", user="op1"), 30.0)
        assert res is not None and not res.success and res.reason.startswith("RECIPE"), res
        replies.append(res.reason.replace(path, "<id>"))
    assert replies[0] == replies[1], replies

    # a failed log-in on another interface (the HMI's directory on the cell's shared store)
    # reaches the supervisor's record too (Part 11 11.300(d))
    hmi_users = UserDirectory.from_file(Path(default_config_dir()) / "users.yaml", _Wall())
    hmi_users.guard = LoginGuard.shared(hmi_users.config.policy, source="hmi")
    with pytest.raises(AuthError):
        hmi_users.authenticate("qa1", "not-the-password")
    client.wait_for(lambda: any(row[3] == "auth.failed" and '"hmi"' in row[5] for row in _record_rows(rec)), 10.0,
                    "the HMI's failed log-in in the record")

    # the record: the refusals are there, with actor "system"; no unauthenticated actor anywhere
    client.wait_for(lambda: sum(1 for row in _record_rows(rec) if '"UNAUTHENTICATED"' in row[5]) >= 5, 10.0,
                    "device refusals recorded")
    rows = _record_rows(rec)
    actors = {row[1] for row in rows}
    assert actors <= USERS | {"system", "supervisor", "lifecycle_manager"}, actors
    assert not [row for row in rows if "mallory" in (row[1], row[2])]
    roles = {u.id: u.role for u in load_config(default_config_dir()).users.users}
    assert all(row[2] == roles[row[1]] for row in rows if row[1] in USERS), {(r[1], r[2]) for r in rows}
    auth = [row for row in rows if row[0] == "auth" and row[3] == "auth.refused"]
    assert {json.loads(row[5])["service"] for row in auth} >= {"/cell/operate", "/cell/batch/run", "/cell/events"}
    assert not [row for row in rows if "forged" in row[4] + row[5] and row[0] != "auth"]
    assert all(row[1] == "system" for row in auth)
    assert any(json.loads(row[5]).get("claimed_user") == "mallory" and row[1] == "system" for row in rows)


def _udp_sockets(pid: int) -> list[tuple[str, int]]:
    import socket
    import struct

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = []
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[9] in inodes:
            ip, port = f[1].split(":")
            out.append((socket.inet_ntoa(struct.pack("<I", int(ip, 16))), int(port, 16)))
    return out


def test_the_graph_is_confined_to_the_host_by_its_own_settings(cell):
    """Every node process runs with localhost discovery and the host-only Fast DDS profile set
    by the launcher itself, and receives DDS traffic on loopback only: every socket on the
    domain's RTPS ports is bound to 127.0.0.1 (or joined to a multicast group on it). Without
    the profile Fast DDS binds them to 0.0.0.0, reachable from any network."""
    _client, _rec, _tmp, procs = cell
    base = 7400 + 250 * int(os.environ["ROS_DOMAIN_ID"])
    for name in ("isolator", "arm", "supervisor", "lifecycle_manager"):
        pid = procs.pid(name)
        env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST", name
        assert env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("fastdds_host_only.xml"), name
        rtps = [(ip, port) for ip, port in _udp_sockets(pid) if base <= port < base + 250]
        assert rtps and all(ip == "127.0.0.1" or ip.startswith("239.") for ip, _ in rtps), (name, rtps)
