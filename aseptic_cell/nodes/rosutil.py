"""Helpers shared by every node process (rclpy 7.1.x from the ros-jazzy-* PyPI wheels).

* ``init_ros`` / ``spin_until_shutdown``: rclpy's own signal handler can swallow the first
  SIGTERM, so nodes init with ``SignalHandlerOptions.NO`` and handle SIGTERM/SIGINT here:
  the handler only sets a flag; the spin loop (``spin_once`` with a short timeout) sees it,
  runs the shutdown hooks, destroys the nodes and shuts rclpy down -> exit code 0.
* ``call_service``: ``call_async`` + ``spin_once`` loop with a wall deadline (Jazzy's
  ``spin_until_future_complete`` adds ~17 ms per call). Only OUTSIDE executor callbacks.
* ``on_executor``: run a call on an executor's own thread. rclpy 7.1.5's
  ``ActionClient.send_goal_async``/``get_result_async`` register the pending request only after
  sending it, without a lock: called from another thread while the executor spins, a fast reply
  can be taken first and dropped ("Ignoring unexpected goal response"), and the caller waits
  forever. Sending from the executor thread closes that window.
* ``wall_timer``: a timer on the steady clock, so a 1000x sim speed-up does not multiply
  callback rates of nodes running with ``use_sim_time``.
* ``msg_to_dict`` / ``import_type``: stand-ins for rosidl_runtime_py (not installable here).
"""

from __future__ import annotations

import array
import importlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import rclpy
import rclpy.utilities
from builtin_interfaces.msg import Time
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.timer import Timer

_shutdown = threading.Event()
_shutdown_signal: list[int] = []


def shutdown_requested() -> bool:
    """True once SIGTERM/SIGINT arrived (or ``request_shutdown()`` was called)."""
    return _shutdown.is_set()


def request_shutdown(signum: int | None = None) -> None:
    """Ask ``spin_until_shutdown`` to stop (what the signal handlers do)."""
    if signum is not None:
        _shutdown_signal.append(signum)
    _shutdown.set()


def _on_signal(signum: int, _frame: Any) -> None:
    request_shutdown(signum)


def init_ros(
    argv: Sequence[str] | None = None, *, context: Context | None = None, install_signal_handlers: bool = True
) -> list[str]:
    """``rclpy.init`` without rclpy's signal handlers; SIGTERM/SIGINT set the shutdown flag.

    Args:
        argv: the process arguments (``sys.argv`` when None), including ``--ros-args ...``.
        context: the rclpy context (default context when None).
        install_signal_handlers: install the Python handlers (main thread only).

    Returns:
        The arguments that are not ROS arguments (``argv[1:]`` minus ``--ros-args ...``).
    """
    import sys

    args = list(sys.argv if argv is None else argv)
    _shutdown.clear()
    del _shutdown_signal[:]
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    if install_signal_handlers and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    return rclpy.utilities.remove_ros_args(args)[1:]


def spin_until_shutdown(
    node_or_nodes: Node | Iterable[Node],
    executor: Executor | None = None,
    *,
    period_s: float = 0.1,
    on_shutdown: Iterable[Callable[[], None]] = (),
    context: Context | None = None,
) -> int:
    """Spin until a shutdown is requested (signal) or the context goes down; clean up; return 0.

    Shutdown hooks run after spinning stopped and before the nodes are destroyed (the
    lifecycle manager tears its nodes down there). A hook that raises is logged and the
    clean-up continues.
    """
    nodes = [node_or_nodes] if isinstance(node_or_nodes, Node) else list(node_or_nodes)
    ctx = context or (nodes[0].context if nodes else None)
    exe = executor or SingleThreadedExecutor(context=ctx)
    for n in nodes:
        exe.add_node(n)
    try:
        while not _shutdown.is_set() and (ctx is None or ctx.ok()):
            try:
                exe.spin_once(timeout_sec=period_s)
            except RCLError as exc:
                # e.g. a lifecycle change_state request for a transition the current state does
                # not have: rclpy raises inside its service handler. A bad request must never
                # take a device node down; it is logged and refused (no response is sent).
                if nodes:
                    nodes[0].get_logger().error(f"request failed and was ignored: {exc}")
    except KeyboardInterrupt:  # handlers not installed (not the main thread) or a second ^C
        pass
    finally:
        if nodes:
            why = f"signal {_shutdown_signal[0]}" if _shutdown_signal else "shutdown"
            nodes[0].get_logger().info(f"{why}: stopping")
        for n in nodes:
            exe.remove_node(n)
        for hook in on_shutdown:  # may spin the nodes themselves (call_service)
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - clean-up must go on
                if nodes:
                    nodes[0].get_logger().error(f"shutdown hook {hook!r} failed: {exc!r}")
        exe.shutdown(timeout_sec=1.0)
        for n in nodes:
            n.destroy_node()
        if ctx is None:
            rclpy.try_shutdown()
        else:
            ctx.try_shutdown()
    return 0


def run_node(node_factory: Callable[[], Node | Iterable[Node]], argv: Sequence[str] | None = None) -> int:
    """``main()`` body for a node module: init, build the node(s), spin, clean up."""
    init_ros(argv)
    try:
        made = node_factory()
    except BaseException:
        rclpy.try_shutdown()
        raise
    return spin_until_shutdown(made)


def call_service(
    node: Node,
    client: Any,
    request: Any,
    timeout_s: float,
    *,
    executor: Executor | None = None,
    wait_for_service: bool = True,
) -> Any:
    """Call a service and wait for the answer with a wall-clock deadline.

    Never call this from inside an executor callback of the same node (it spins).

    Raises:
        TimeoutError: no service / no answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    if executor is not None:
        return _call(client, request, timeout_s, deadline, executor, wait_for_service)
    own = SingleThreadedExecutor(context=node.context)
    own.add_node(node)
    try:
        return _call(client, request, timeout_s, deadline, own, wait_for_service)
    finally:
        own.remove_node(node)
        own.shutdown(timeout_sec=0)


def _call(
    client: Any, request: Any, timeout_s: float, deadline: float, executor: Executor, wait_for_service: bool
) -> Any:
    if wait_for_service:
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {client.srv_name} not available within {timeout_s} s")
            executor.spin_once(timeout_sec=0.05)
    future = client.call_async(request)
    while not future.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            client.remove_pending_request(future)
            raise TimeoutError(f"no answer from {client.srv_name} within {timeout_s} s")
        executor.spin_once(timeout_sec=min(0.05, remaining))
    return future.result()


def on_executor(executor: Executor, fn: Callable[..., Any], *args: Any, timeout_s: float = 10.0) -> Any:
    """Run ``fn(*args)`` on ``executor``'s spinning thread; return its result (or raise its error).

    Only from a thread other than the one spinning ``executor`` (it would wait for itself).
    """
    box: dict[str, Any] = {}
    ran = threading.Event()

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc
        finally:
            ran.set()

    executor.create_task(run)
    if not ran.wait(timeout_s):
        raise TimeoutError(f"the executor did not run {getattr(fn, '__name__', fn)} within {timeout_s:.1f} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def steady_clock() -> Clock:
    return Clock(clock_type=ClockType.STEADY_TIME)


def wall_timer(node: Node, period_s: float, cb: Callable[[], Any], **kwargs: Any) -> Timer:
    """A timer on the steady clock: fires every ``period_s`` wall seconds whatever the sim speed."""
    return node.create_timer(period_s, cb, clock=steady_clock(), **kwargs)


def stamp_now(node: Node) -> Time:
    """The node's ROS time (sim time with ``use_sim_time``) as builtin_interfaces/Time."""
    return node.get_clock().now().to_msg()


def msg_to_dict(msg: Any) -> Any:
    """A ROS message (or value) as plain Python: dicts, lists, str, int, float, bool."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: msg_to_dict(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)):
        return [msg_to_dict(v) for v in msg]
    if isinstance(msg, array.array):
        return msg.tolist()
    if isinstance(msg, bytes):
        return list(msg)
    tolist = getattr(msg, "tolist", None)  # numpy arrays (fixed-size fields) and numpy scalars
    if callable(tolist):
        return tolist()
    return msg


def import_type(name: str) -> Any:
    """``"pkg/msg/Type"`` (also ``pkg/srv/...``, ``pkg/action/...``, or ``pkg/Type`` = msg) -> class.

    Raises:
        ValueError: malformed name. ImportError/AttributeError: unknown package or type.
    """
    parts = name.strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] not in ("msg", "srv", "action") or not all(parts):
        raise ValueError(f"not a ROS interface type name: {name!r} (expected pkg/msg/Type)")
    pkg, sub, typ = parts
    module = importlib.import_module(f"{pkg}.{sub}")
    try:
        return getattr(module, typ)
    except AttributeError:
        raise AttributeError(f"{pkg}.{sub} has no type {typ!r}") from None
