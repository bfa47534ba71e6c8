"""Session-wide test set-up.

The ROS environment is fixed here at import time, i.e. before any test module (or
anything it imports) can import rclpy:

* ROS_LOG_DIR           a temp dir unless already set (rclpy.init() fails without HOME/ROS_LOG_DIR)
* ROS_PYTHON_CHECK_FIELDS=1   Jazzy's generated messages check field types only when this is set
* ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   DDS traffic stays on loopback
* AMENT_PREFIX_PATH     the venv (sys.prefix) unless set: ament_index finds aseptic_cell's share/
* ROS_DOMAIN_ID         CELL_TEST_DOMAIN_BASE (default 50) + the xdist worker index, so
                        parallel workers never see each other's nodes. Always overridden:
                        tests must never talk to a cell running on the default domain.
* ASEPTIC_CELL_SECURITY_DIR   a fresh trust list and keys per test process (issue 12)
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

os.environ["ROS_PYTHON_CHECK_FIELDS"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
if not os.environ.get("ROS_LOG_DIR"):
    os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="aseptic_cell-roslog-")
    atexit.register(shutil.rmtree, os.environ["ROS_LOG_DIR"], ignore_errors=True)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under xdist
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


TEST_DOMAIN_ID = int(os.environ.get("CELL_TEST_DOMAIN_BASE", "50")) + _worker_index()
if not 0 <= TEST_DOMAIN_ID <= 232:
    raise RuntimeError(f"ROS_DOMAIN_ID {TEST_DOMAIN_ID} out of range; lower CELL_TEST_DOMAIN_BASE")
os.environ["ROS_DOMAIN_ID"] = str(TEST_DOMAIN_ID)

# The authenticated command plane (issue 12): a fresh security directory (trust list and keys)
# per test process, inherited by every node process; the tests' CellClient signs as "bench",
# a principal of this test trust list only (device and operator scopes: tests drive device
# nodes directly). Never the demo's keys.
from aseptic_cell.security import PRINCIPALS, init_security_dir  # noqa: E402

_SEC = tempfile.mkdtemp(prefix="aseptic_cell-security-")
atexit.register(shutil.rmtree, _SEC, ignore_errors=True)
init_security_dir(_SEC, principals={**PRINCIPALS, "bench": ("device", "operator")})
os.environ["ASEPTIC_CELL_SECURITY_DIR"] = _SEC
os.environ["ASEPTIC_CELL_CLIENT_PRINCIPAL"] = "bench"

import pytest  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_MARKED_DIRS = {"ros": "ros", "hil": "hil", "e2e": "e2e"}  # tests/<dir>/ -> marker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/ros, tests/hil, tests/e2e get the marker of their folder."""
    for item in items:
        rel = os.path.relpath(str(item.path), _HERE)
        top = rel.split(os.sep, 1)[0]
        if top in _MARKED_DIRS:
            item.add_marker(_MARKED_DIRS[top])


@pytest.fixture
def ros_context():
    """A fresh, initialised rclpy Context on this worker's domain; shut down afterwards.

    Create nodes with `rclpy.create_node(name, context=ros_context)` and executors with
    `SingleThreadedExecutor(context=ros_context)`. Destroy nodes / join spin threads
    before the test returns (the fixture then shuts the context down).
    """
    from rclpy.context import Context

    ctx = Context()
    ctx.init(domain_id=TEST_DOMAIN_ID)
    try:
        yield ctx
    finally:
        ctx.try_shutdown()
