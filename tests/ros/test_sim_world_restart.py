"""A SIGKILLed simulator restarted while the graph runs (issue 12 item 8; found by
benchmarks/chaos.py): a real plant does not jump back in time, so the new world's clock starts
where the graph last saw it (sim_world reads the device nodes' /diagnostics stamps, their ROS time
stopped at the last /clock) — /clock and the devices' signal times never go backwards. Before:
the new world published /clock from 0, every signal was stamped before the ones already seen and
the supervisor's signed restarts were refused (RB-02)."""

from __future__ import annotations

import json
import signal
import threading

import pytest

from aseptic_cell.nodes.graph import graph_by_name

from .graphutil import running_graph, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_a_restarted_simulator_resumes_the_sim_clock_where_the_graph_left_it(tmp_path):
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import String

    nodes = ["sim_world", "isolator", "lifecycle_manager"]
    with running_graph(tmp_path, speed=500.0, nodes=nodes) as (procs, client, specs):
        lock = threading.Lock()
        clock: list[float] = []
        sig_t: list[float] = []

        def on_clock(m):
            with lock:
                clock.append(m.clock.sec + m.clock.nanosec * 1e-9)

        def on_signals(m):
            with lock:
                sig_t.append(float(json.loads(m.data)["t"]))

        client.node.create_subscription(Clock, "/clock", on_clock, 50)
        client.node.create_subscription(String, "/cell/isolator/signals", on_signals, 50)
        wait_until(lambda: len(clock) > 10 and len(sig_t) > 3 and clock[-1] > 100.0, 30.0, "sim time running")

        procs.kill("sim_world", signal.SIGKILL)
        client.wait_state("isolator", lambda s: not s.comm_ok, 15.0, "isolator comm lost")
        with lock:
            n_clock, n_sig = len(clock), len(sig_t)
            last_clock, last_sig = max(clock), max(sig_t)
        procs.start_one(graph_by_name(specs)["sim_world"])
        client.wait_state("isolator", lambda s: s.comm_ok, 60.0, "isolator comm restored")
        wait_until(lambda: len(clock) > n_clock + 10 and len(sig_t) > n_sig + 3, 30.0, "sim time running again")
        with lock:
            after_clock, after_sig = clock[n_clock:], sig_t[n_sig:]
        assert min(after_clock) >= last_clock - 1e-6, (last_clock, after_clock[:5])
        assert min(after_sig) >= last_sig - 1e-6, (last_sig, after_sig[:5])
        assert all(b >= a for a, b in zip(after_clock, after_clock[1:], strict=False))
        # the device stays latched until the operator's recovery (nothing resumes by itself)
        assert "(latched)" in client.state("isolator").lifecycle_state
    assert procs.exit_codes.get("isolator") == 0, procs.exit_codes
