"""Node graph, launch-file parity and the process launcher (real processes, real DDS)."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from aseptic_cell.launcher import CellProcesses, alive, group_members, wait_for_nodes
from aseptic_cell.nodes.graph import NodeSpec, bringup_order, default_graph, param_to_yaml

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent / "helpers"


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s} s")
        time.sleep(0.02)


# --- the declarative graph ------------------------------------------------------------------


def test_default_graph_order_dependencies_and_parameters(tmp_path):
    g = default_graph(tmp_path, 100.0)
    assert [s.name for s in g] == ["sim_world", "isolator", "vhp", "autoclave", "arm", "lifecycle_manager"]
    by = {s.name: s for s in g}
    assert by["isolator"].depends_on == ()
    assert set(by["vhp"].depends_on) == {"isolator", "arm"}
    assert by["arm"].depends_on == ("isolator",)
    assert by["autoclave"].depends_on == ("isolator",)
    assert [s.name for s in g if s.lifecycle] == ["isolator", "vhp", "autoclave", "arm"]
    assert by["sim_world"].params == {"config_dir": str(tmp_path), "speed": 100.0,
                                      "clock_source": "own"}  # publishes /clock itself
    for name in ("isolator", "vhp", "autoclave", "arm"):
        assert by[name].params == {"use_sim_time": True, "config_dir": str(tmp_path), "hardware": "sim"}
    lm = by["lifecycle_manager"].params
    assert lm["managed_nodes"] == ["isolator", "autoclave", "arm", "vhp"]  # dependencies first
    assert sorted(lm["dependencies"]) == ["arm:isolator", "autoclave:isolator", "vhp:isolator,arm"]
    assert lm["use_sim_time"] is True and lm["autostart"] is True
    assert default_graph(tmp_path, float("inf"))[0].params["speed"] == 0.0  # "max"


def test_default_graph_subset_and_extra(tmp_path):
    g = default_graph(tmp_path, 1.0, nodes=["isolator", "vhp", "lifecycle_manager"])
    assert [s.name for s in g] == ["isolator", "vhp", "lifecycle_manager"]
    assert g[1].depends_on == ("isolator",)  # arm dropped with the subset
    assert g[2].params["managed_nodes"] == ["isolator", "vhp"]
    assert [s.name for s in default_graph(tmp_path, 1.0, nodes=["arm"])] == ["arm"]  # no manager unless asked
    extra = NodeSpec(
        "supervisor", "aseptic_cell.nodes.supervisor", {"use_sim_time": True}, ("isolator",), True
    )
    g = default_graph(tmp_path, 1.0, extra=[extra])
    assert [s.name for s in g][-2:] == ["supervisor", "lifecycle_manager"]
    assert "supervisor" in g[-1].params["managed_nodes"]
    with pytest.raises(ValueError, match="unknown node"):
        default_graph(tmp_path, 1.0, nodes=["nope"])


def test_bringup_order_is_stable_and_rejects_cycles():
    a = NodeSpec("a", "m", {}, ("b",), True)
    b = NodeSpec("b", "m", {}, (), True)
    c = NodeSpec("c", "m", {}, (), True)
    assert bringup_order([a, b, c]) == ["b", "a", "c"]
    with pytest.raises(ValueError, match="cycle"):
        bringup_order([NodeSpec("x", "m", {}, ("y",), True), NodeSpec("y", "m", {}, ("x",), True)])


def test_param_encoding():
    assert param_to_yaml(True) == "true"
    assert param_to_yaml(2) == "2"
    assert param_to_yaml(0.5) == "0.5"
    assert param_to_yaml("true") == '"true"'  # stays a string
    assert param_to_yaml(["a:b,c", "d"]) == '["a:b,c", "d"]'
    with pytest.raises(ValueError):
        param_to_yaml([])
    with pytest.raises(ValueError):
        param_to_yaml(float("nan"))
    spec = NodeSpec("n1", "pkg.mod", {"x": 1.0})
    assert spec.command("py") == ["py", "-m", "pkg.mod", "--ros-args", "-r", "__node:=n1", "-p", "x:=1.0"]
    assert spec.executable == "mod"


# --- launch file parity -----------------------------------------------------------------------


def _launch_nodes(path: Path) -> dict[str, dict]:
    """Node(...) calls of a launch file: name -> {executable, params: {key: literal or None}}."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Node"):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        params: dict = {}
        for d in getattr(kw.get("parameters"), "elts", []):
            assert isinstance(d, ast.Dict)
            for k, v in zip(d.keys, d.values, strict=True):
                try:
                    params[ast.literal_eval(k)] = ast.literal_eval(v)
                except ValueError:
                    params[ast.literal_eval(k)] = None  # a substitution (LaunchConfiguration)
        out[ast.literal_eval(kw["name"])] = {
            "executable": ast.literal_eval(kw["executable"]),
            "package": ast.literal_eval(kw["package"]),
            "params": params,
        }
    return out


def test_launch_file_matches_default_graph(tmp_path):
    from aseptic_cell.physics.graph import with_arm_engine

    nodes = _launch_nodes(REPO / "launch" / "cell.launch.py")
    # the launch file holds every node of every arm mode (mujoco_arm under a condition: arm:=mujoco)
    graph = with_arm_engine(default_graph(tmp_path, 1.0), str(tmp_path), "mujoco", speed=1.0)
    assert list(nodes) == [s.name for s in graph]
    for spec in graph:
        n = nodes[spec.name]
        assert n["package"] == "aseptic_cell"
        assert n["executable"] == spec.executable, spec.name
        assert set(n["params"]) == set(spec.params), spec.name
        for key, value in n["params"].items():
            if value is not None and key != "speed":  # literals must agree; substitutions are launch args
                assert value == spec.params[key], (spec.name, key)


def test_console_scripts_declared_for_every_node():
    """setup.py must install each graph node as lib/aseptic_cell/<executable> (ros2 run / launch)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    scripts: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "=" in node.value
            and ":" in node.value
        ):
            name, _, target = node.value.partition("=")
            scripts[name.strip()] = target.strip()
    for spec in default_graph("/cfg", 1.0):
        assert scripts.get(spec.executable) == f"{spec.module}:main", (
            f"console_scripts entry for {spec.executable}"
        )


# --- processes ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_children_start_become_visible_and_stop_cleanly_on_sigterm(tmp_path, ros_context):
    talker = NodeSpec(_unique("talker"), str(HELPERS / "talker.py"), {"topic": f"/{_unique('t')}/state"})
    lc = NodeSpec(_unique("lc"), str(HELPERS / "lc_helper.py"), {}, (), True)
    t0 = time.monotonic()
    with CellProcesses([talker, lc], log_dir=tmp_path / "logs") as cp:
        states = wait_for_nodes([talker.name, lc.name], 20.0, context=ros_context, check=_no_exit(cp))
        visible_after = time.monotonic() - t0
        assert states == {talker.name: "present", lc.name: "present"}
        # an unconfigured lifecycle node is present but not active: wait_for_nodes says so
        with pytest.raises(TimeoutError, match=rf"{lc.name}.*unconfigured"):
            wait_for_nodes([lc], 5.0, context=ros_context)  # long enough to discover it under load
        pids = [p.pid for p in cp.procs]
        codes = cp.stop(timeout_s=5.0)
    # rosutil handles SIGTERM itself (rclpy's handler is off): both exit 0, not -9
    assert codes == {talker.name: 0, lc.name: 0}
    assert not any(alive(pid) for pid in pids)
    assert "--ros-args" in (tmp_path / "logs" / f"{talker.name}.log").read_text()
    print(f"two node processes visible in the graph after {visible_after:.2f} s")


def _no_exit(cp: CellProcesses):
    def check():
        exited = cp.poll()
        if exited:
            raise RuntimeError(f"process exited early: {exited}")

    return check


@pytest.mark.timeout(40)
def test_stop_escalates_to_sigkill_and_kills_grandchildren(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    stubborn = NodeSpec("stubborn", str(HELPERS / "ignore_term.py"))
    parent = NodeSpec("parent", str(HELPERS / "spawn_grandchild.py"), {"pidfile": str(pidfile)})
    cp = CellProcesses([stubborn, parent], log_dir=tmp_path)
    cp.start()
    try:
        _wait(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "grandchild pid file")
        _wait(lambda: "ignoring SIGTERM" in (tmp_path / "stubborn.log").read_text(), 10, "stubborn ready")
        grandchild = int(pidfile.read_text())
        assert alive(grandchild)
        pids = {p.name: p.pid for p in cp.procs}
        assert grandchild in group_members(pids["parent"])
        t0 = time.monotonic()
        codes = cp.stop(timeout_s=1.0)
        took = time.monotonic() - t0
    finally:
        cp.stop(timeout_s=0.5)
    assert codes == {"stubborn": -9, "parent": 0}
    assert not alive(grandchild), "grandchild survived the group kill"
    assert not any(alive(p) for p in pids.values())
    assert took < 5.0


@pytest.mark.timeout(40)
def test_unexpected_exit_is_reported_and_not_restarted(tmp_path, caplog):
    crash = NodeSpec("crasher", str(HELPERS / "exit_soon.py"))
    stay = NodeSpec("stayer", str(HELPERS / "ignore_term.py"))
    caplog.set_level(logging.ERROR, logger="aseptic_cell.launcher")
    lines: list[str] = []

    class Sink:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    with CellProcesses([crash, stay], log_dir=tmp_path, echo=True, echo_to=Sink()) as cp:
        deadline = time.monotonic() + 10
        exited: list = []
        while not exited and time.monotonic() < deadline:
            exited = cp.poll()
            time.sleep(0.05)
        assert exited == [("crasher", 3)]
        time.sleep(1.0)
        assert cp.poll() == []  # reported once
        assert [p.name for p in cp.procs] == ["crasher", "stayer"]  # nothing restarted
        assert cp.running() == ["stayer"]
        codes = cp.stop(timeout_s=0.5)
    assert codes == {"crasher": 3, "stayer": -9}
    assert "crasher exited with code 3; not restarted (recovery is an operator action)" in caplog.text
    assert "[crasher] about to fail\n" in lines
    assert "about to fail" in (tmp_path / "crasher.log").read_text()


@pytest.mark.timeout(40)
def test_crashing_parent_still_kills_the_groups(tmp_path):
    """The atexit guard: a parent that dies of an exception leaves no node or grandchild behind."""
    pidfile = tmp_path / "gc.pid"
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(f"""
        import time, pathlib
        from aseptic_cell.launcher import CellProcesses
        from aseptic_cell.nodes.graph import NodeSpec
        spec = NodeSpec("p", {str(HELPERS / "spawn_grandchild.py")!r}, {{"pidfile": {str(pidfile)!r}}})
        cp = CellProcesses([spec], log_dir={str(tmp_path)!r})
        cp.start()
        deadline = time.monotonic() + 10
        while not (pathlib.Path({str(pidfile)!r}).exists() and pathlib.Path({str(pidfile)!r}).read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        print(cp.pid("p"), flush=True)
        raise RuntimeError("parent crashes without stop()")
    """)
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "parent crashes" in r.stderr
    node_pid, grandchild = int(r.stdout.split()[0]), int(pidfile.read_text())
    _wait(lambda: not alive(node_pid) and not alive(grandchild), 5, "children killed")


@pytest.mark.timeout(20)
def test_wait_for_nodes_names_the_missing(ros_context):
    name = _unique("never_started")
    with pytest.raises(TimeoutError, match=rf"missing from the graph: \['{name}'\]"):
        wait_for_nodes([name], 0.5, context=ros_context)
