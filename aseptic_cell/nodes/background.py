"""One helper for "a private rclpy context, one node, an executor spinning on a daemon thread".

Used wherever ROS is a side channel of something else: the synchronous client of the graph
(demo, tests), the HMI's and the OPC UA cell server's ROS sides, the sim device backend (a
field-bus driver of its device node) and the OPC UA server's test stand-in. Each gets its own
context, so it neither depends on nor disturbs a global ``rclpy.init()`` and shuts down
cleanly on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class BackgroundRos:
    """A node on its own context, spun by a daemon thread once :meth:`start` is called.

    Args:
        node_name: the node's name.
        domain_id: ROS domain (None: ``ROS_DOMAIN_ID`` of the environment).
        thread_name: name of the spin thread (shows in stack dumps).
        args: ROS command-line arguments (``--ros-args ...``), the first being the program name.
        spin_timeout_s: how long one executor round waits for work.
        start_parameter_services: create the node's parameter services.
    """

    def __init__(self, node_name: str, *, domain_id: int | None = None, thread_name: str = "ros-background",
                 args: Sequence[str] | None = None, spin_timeout_s: float = 0.05,
                 start_parameter_services: bool = True) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        kwargs: dict[str, Any] = {"context": self.context, "signal_handler_options": SignalHandlerOptions.NO}
        if domain_id is not None:
            kwargs["domain_id"] = domain_id
        if args is not None:
            kwargs["args"] = list(args)
        rclpy.init(**kwargs)
        try:
            self.node = rclpy.create_node(node_name, context=self.context,
                                          start_parameter_services=start_parameter_services)
        except Exception:
            self.context.try_shutdown()
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._timeout = spin_timeout_s
        self._thread_name = thread_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> BackgroundRos:
        """Start spinning (idempotent)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._spin, name=self._thread_name, daemon=True)
            self._thread.start()
        return self

    @property
    def spinning(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=self._timeout)
            except Exception:  # noqa: BLE001 - a callback's error must not end observation
                if self._stop.is_set() or not self.context.ok():
                    break
                log.exception("%s: executor error", self._thread_name)
                time.sleep(self._timeout)

    def every(self, period_s: float, callback: Callable[[], Any]) -> None:
        """Call ``callback`` on the spin thread every ``period_s`` of wall time (steady clock)."""
        from rclpy.clock import Clock, ClockType

        self.node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def close(self, timeout_s: float = 2.0, *, drain_rounds: int = 0) -> None:
        """Stop the thread, take up to ``drain_rounds`` callbacks already queued, destroy the
        node, shut the context down (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        for _ in range(drain_rounds):
            try:
                self.executor.spin_once(timeout_sec=0.0)
            except Exception:  # noqa: BLE001 - shutting down
                break
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        except Exception as exc:  # noqa: BLE001 - shutting down: nothing left to protect
            log.debug("%s: shutdown: %r", self._thread_name, exc)
        self.context.try_shutdown()
