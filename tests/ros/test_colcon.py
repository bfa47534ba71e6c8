"""`colcon build` of ros2_ws/ as a ROS user builds an overlay: the workspace's packages are
discovered and ordered by colcon (cell_interfaces before aseptic_cell), and `aseptic_cell` is
built and installed by colcon into a temp dir, on the underlay that holds cell_interfaces.

The underlay is the project venv: `make interfaces` (scripts/build_interfaces.sh) has built
ros2_ws/src/cell_interfaces from the same CMakeLists with the same ament_cmake/rosidl wheels and
installed it there (every ROS test then imports its generated types). Building cell_interfaces a
second time here, through colcon, cost 125-188 s of the suite's CI time for the same cmake
invocation, so this test builds the `aseptic_cell` package alone (base path
ros2_ws/src/aseptic_cell) on that underlay.

colcon comes from `colcon-common-extensions`: looked up as $COLCON (path to the colcon
script), then next to this interpreter (the project venv), then on PATH. Build, install and log
bases all live under tmp_path: the repo stays clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aseptic_cell.nodes.graph import default_graph

REPO = Path(__file__).resolve().parents[2]
WS_SRC = REPO / "ros2_ws" / "src"


def _colcon() -> str | None:
    for candidate in (
        os.environ.get("COLCON"),
        str(Path(sys.prefix) / "colcon" / "bin" / "colcon"),  # installed by `make venv`
        str(Path(sys.executable).parent / "colcon"),
        shutil.which("colcon"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--", "ros2_ws", "build", "install", "log"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_colcon_build_of_the_workspace(tmp_path):
    colcon = _colcon()
    assert colcon is not None, "colcon not installed: `make venv` installs it into .venv/colcon"
    prefix = sys.prefix  # the venv holding the ros-jazzy-* wheels = the ament/CMake prefix
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=prefix,
        CMAKE_PREFIX_PATH=prefix,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    if Path(colcon).resolve().parent != Path(sys.executable).parent.resolve():
        # a colcon from another venv: it must bootstrap its own environment (the ROS wheels' bootstrapper)
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
        env.pop("LD_LIBRARY_PATH", None)
    before = _git_status()
    listed = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "list", "--topological-order", "--names-only",
         "--base-paths", str(WS_SRC)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["cell_interfaces", "aseptic_cell"], listed.stdout
    # the underlay: cell_interfaces as `make interfaces` installed it (ament index + generated Python)
    assert (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / "cell_interfaces").is_file()
    cmd = [
        colcon,
        "--log-base",
        str(tmp_path / "log"),
        "build",
        "--base-paths",
        str(WS_SRC / "aseptic_cell"),  # the overlay: cell_interfaces comes from the underlay
        "--build-base",
        str(tmp_path / "build"),
        "--install-base",
        str(tmp_path / "install"),
        "--event-handlers",
        "console_direct-",
        "console_cohesion+",
        "--cmake-args",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1100)
    took = time.monotonic() - t0
    assert r.returncode == 0, f"colcon build failed ({took:.0f} s):\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    assert "1 package finished" in r.stdout, r.stdout[-2000:]

    install = tmp_path / "install"
    share = install / "aseptic_cell" / "share" / "aseptic_cell"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "cell.launch.py").is_file()
    assert (
        install / "aseptic_cell" / "share" / "ament_index" / "resource_index" / "packages" / "aseptic_cell"
    ).is_file()
    assert not (install / "cell_interfaces").exists()  # resolved from the underlay, not rebuilt
    scripts = install / "aseptic_cell" / "lib" / "aseptic_cell"
    for spec in default_graph("/cfg", 1.0):  # ros2 run / launch executables
        assert (scripts / spec.executable).is_file(), spec.executable
    assert _git_status() == before, "the build wrote into the repository"
    print(f"\ncolcon build of ros2_ws: {took:.0f} s")
