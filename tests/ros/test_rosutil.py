"""rosutil.on_executor: work handed to an executor's own spinning thread."""

from __future__ import annotations

import threading

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from aseptic_cell.nodes.rosutil import on_executor


@pytest.fixture
def spinning():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("on_executor_probe", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()
    run = threading.Event()
    run.set()

    def spin():
        while not stop.is_set():
            if run.is_set():
                ex.spin_once(timeout_sec=0.05)
            else:
                stop.wait(0.05)

    t = threading.Thread(target=spin, name="probe-spin")
    t.start()
    try:
        yield ex, t, run
    finally:
        stop.set()
        t.join(5.0)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_runs_on_the_spinning_thread_and_returns_its_result(spinning):
    ex, t, _ = spinning
    assert on_executor(ex, threading.get_ident) == t.ident != threading.get_ident()
    assert on_executor(ex, divmod, 17, 5) == (3, 2)


def test_hands_back_the_callee_error(spinning):
    ex, _, _ = spinning
    with pytest.raises(ZeroDivisionError):
        on_executor(ex, divmod, 1, 0)


def test_times_out_when_the_executor_is_not_spinning(spinning):
    ex, _, run = spinning
    run.clear()
    threading.Event().wait(0.3)  # let a spin_once already in progress end
    with pytest.raises(TimeoutError, match="did not run"):
        on_executor(ex, threading.get_ident, timeout_s=0.3)
    run.set()
