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
    """Tests under tests/ros, tests/hil, tests/e2e get the marker of their folder; the longest
    modules run first (see _longest_modules_first)."""
    _longest_modules_first(items)
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


# Suite time (2 xdist workers, --dist loadscope --no-loadscope-reorder, Makefile): the modules
# that take longest start first, so that no long module starts near the end while the other
# worker idles (longest-processing-time-first). Weights are the worker seconds of a module
# (set-up included) measured by a whole run with --durations=0; a module not listed weighs
# WEIGHT_PER_TEST per test. Re-measure with scripts/module_weights.py after a big change.
_WEIGHTS_FILE = os.path.join(_HERE, "module_weights.json")
WEIGHT_PER_TEST = 0.2


def _module_weights() -> dict[str, float]:
    import json

    try:
        with open(_WEIGHTS_FILE, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return {}
    return {str(k): float(v) for k, v in raw.get("modules", {}).items()}


def _longest_modules_first(items: list[pytest.Item]) -> None:
    weights = _module_weights()
    count: dict[str, int] = {}
    for item in items:
        count[item.nodeid.split("::", 1)[0]] = count.get(item.nodeid.split("::", 1)[0], 0) + 1
    order = {item.nodeid: i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[float, int]:
        mod = item.nodeid.split("::", 1)[0]
        return (-weights.get(mod, WEIGHT_PER_TEST * count[mod]), order[item.nodeid])

    items.sort(key=key)
