"""Process supervisor for the node graph: ``cellctl run`` / ``cellctl demo`` / system tests.

One OS process per node (``aseptic_cell.nodes.graph.NodeSpec``), each in its own session
and process group, so stopping a node also stops anything it spawned. Output goes to
``<log_dir>/<name>.log`` (optionally echoed with a ``[name]`` prefix).

Nothing is ever restarted: a process that exits is reported by ``poll()`` and logged
loudly; recovery is an operator action (ARCHITECTURE rule 6).

``stop()`` signals the groups in REVERSE start order, one at a time, so the lifecycle
manager (started last) can tear the device nodes down while they are still running:
SIGTERM, wait up to ``timeout_s``, then SIGKILL the whole group (grandchildren included).
A guard (atexit + SIGTERM/SIGHUP handler while running, PR_SET_PDEATHSIG in the children)
kills the groups if the parent dies or forgets to stop.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .nodes.graph import NodeSpec

log = logging.getLogger("aseptic_cell.launcher")

_PR_SET_PDEATHSIG = 1
_LIVE: weakref.WeakSet[CellProcesses] = weakref.WeakSet()


def _pdeathsig_term() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        pass


def child_env(
    env: Mapping[str, str] | None = None, *, log_dir: Path | None = None, python: str | None = None
) -> dict[str, str]:
    """The environment of a node process.

    Inherits ``env`` (default ``os.environ``), confined to this host
    (:func:`aseptic_cell.security.transport.confine_to_host`). ``ROS_LOG_DIR`` is set when missing (rclpy.init
    fails without HOME/ROS_LOG_DIR) and output is unbuffered. The ros-wheels bootstrap marker
    and ``LD_LIBRARY_PATH`` are kept when the child runs this interpreter (same venv: the
    bootstrapped library path is right) and cleared for another interpreter (the ROS wheels'
    bootstrapper re-execs Python with its own library path: another venv must bootstrap itself).
    """
    out = dict(os.environ if env is None else env)
    from .security.transport import confine_to_host

    confine_to_host(out)  # the graph stays on this host unless the cell is configured multi-host
    if not out.get("ROS_LOG_DIR"):
        out["ROS_LOG_DIR"] = str((log_dir or Path.cwd()) / "ros")
    out["PYTHONUNBUFFERED"] = "1"
    if python is not None and os.path.realpath(python) != os.path.realpath(sys.executable):
        out.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
        out.pop("LD_LIBRARY_PATH", None)
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reads /proc; no psutil)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is ``pgid`` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


@dataclass
class Proc:
    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path
    started: float
    reported: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid


class CellProcesses:
    """Start, watch and stop the node processes of ``specs`` (in list order).

    Args:
        specs: the nodes, in start order (``default_graph()``).
        env: base environment of the children (default ``os.environ``).
        log_dir: per-node log files ``<name>.log`` (created).
        echo: also print every output line as ``[name] line`` (to ``echo_to``, default stdout).
        python: interpreter of the children (default this one: same venv).
        guard: install the atexit / signal guard.
    """

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        env: Mapping[str, str] | None = None,
        log_dir: str | Path = "log/cell",
        *,
        echo: bool = False,
        echo_to: IO[str] | None = None,
        python: str | None = None,
        guard: bool = True,
        autostart: bool = True,
    ) -> None:
        names = [s.name for s in specs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate node names: {sorted(dupes)}")
        self.specs = list(specs)
        self.log_dir = Path(log_dir)
        self.python = python or sys.executable
        self.env = child_env(env, log_dir=self.log_dir, python=self.python)
        self.echo = echo
        self.echo_to = echo_to
        self.guard = guard
        self.procs: list[Proc] = []  # current process of each node, in start order
        self.exited: list[Proc] = []  # earlier processes of explicitly restarted nodes
        self._threads: list[threading.Thread] = []
        self._old_handlers: dict[int, Any] = {}
        self._stopped = False
        self.autostart = autostart
        self._prepared = False

    # --- start ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.log_dir.mkdir(parents=True, exist_ok=True)
        Path(self.env["ROS_LOG_DIR"]).mkdir(parents=True, exist_ok=True)
        if self.guard:
            self._install_guard()

    def start(self) -> CellProcesses:
        """Spawn every process (each in a new session = its own process group)."""
        self._prepare()
        for spec in self.specs:
            self.start_one(spec)
        return self

    def start_one(self, spec: NodeSpec) -> Proc:
        """Spawn one spec (also how an operator-requested restart is done: explicitly).

        Raises:
            RuntimeError: a process of that name is still running.
        """
        self._prepare()
        for old in self.procs:
            if old.name == spec.name and old.popen.poll() is None:
                raise RuntimeError(f"{spec.name} is still running (pid {old.pid}); stop it first")
        log_path = self.log_dir / f"{spec.name}.log"
        cmd = spec.command(self.python)
        fh = open(log_path, "ab", buffering=0)
        fh.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        kwargs: dict[str, Any] = dict(
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pdeathsig_term,
            close_fds=True,
        )
        if self.echo:
            popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
            t = threading.Thread(
                target=self._pump_output,
                args=(spec.name, popen.stdout, fh),
                name=f"out-{spec.name}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        else:
            popen = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, **kwargs)
            fh.close()
        proc = Proc(spec, popen, log_path, time.monotonic())
        for i, old in enumerate(self.procs):
            if old.name == spec.name:  # an explicit restart keeps the node's place in the stop order
                self.exited.append(old)
                self.procs[i] = proc
                break
        else:
            self.procs.append(proc)
        log.info("started %s (pid %d): %s", spec.name, popen.pid, " ".join(cmd))
        return proc

    def _pump_output(self, name: str, stream: IO[bytes], fh: IO[bytes]) -> None:
        out = self.echo_to or sys.stdout
        try:
            for line in iter(stream.readline, b""):
                fh.write(line)
                try:
                    out.write(f"[{name}] {line.decode('utf-8', 'replace').rstrip()}\n")
                    out.flush()
                except Exception:  # noqa: BLE001 - echo is observation only
                    pass
        finally:
            fh.close()
            stream.close()

    # --- watch ---------------------------------------------------------------------------

    def poll(self) -> list[tuple[str, int]]:
        """Processes that exited since the last call, as (name, exit code). Nothing is restarted."""
        exited = []
        for p in self.procs:
            code = p.popen.poll()
            if code is not None and not p.reported:
                p.reported = True
                exited.append((p.name, code))
                if not self._stopped:
                    log.error(
                        "%s exited with code %d; not restarted (recovery is an operator action); log: %s",
                        p.name,
                        code,
                        p.log_path,
                    )
        return exited

    def running(self) -> list[str]:
        return [p.name for p in self.procs if p.popen.poll() is None]

    def pid(self, name: str) -> int:
        return self._proc(name).pid

    def _proc(self, name: str) -> Proc:
        for p in reversed(self.procs):
            if p.name == name:
                return p
        raise KeyError(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one node's process group (tests: simulate a crash)."""
        p = self._proc(name)
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass

    # --- stop ----------------------------------------------------------------------------

    def stop(self, timeout_s: float = 5.0) -> dict[str, int]:
        """Stop the processes in reverse start order, one tier at a time: the lifecycle manager,
        then the services (supervisor, HMI, ...), then the devices, then the simulator. Within a
        tier every group gets SIGTERM at once (they do not depend on each other: stopping them one
        by one only added up their shutdown times); SIGKILL for what survives ``timeout_s``.

        Returns:
            name -> exit code (negative: killed by that signal) for every process started.
        """
        self._stopped = True
        codes: dict[str, int] = {}
        tiers: list[list[Proc]] = []
        for p in reversed(self.procs):  # consecutive processes of one kind form a tier
            if tiers and tiers[-1][0].spec.kind == p.spec.kind:
                tiers[-1].append(p)
            else:
                tiers.append([p])
        for tier in tiers:
            for p in tier:
                self._terminate(p)
            for p in tier:
                codes.setdefault(p.name, self._stop_one(p, timeout_s))
        for t in self._threads:
            t.join(timeout=2.0)
        self._remove_guard()
        return {p.name: codes[p.name] for p in self.procs if p.name in codes}

    @staticmethod
    def _terminate(p: Proc) -> None:
        if p.popen.poll() is None:
            log.info("stopping %s (pid %d): SIGTERM", p.name, p.pid)
            _killpg(p.pid, signal.SIGTERM)

    def _stop_one(self, p: Proc, timeout_s: float) -> int:
        pgid = p.pid  # session leader: pgid == pid
        if p.popen.returncode is not None and not group_members(pgid):
            return p.popen.returncode  # already stopped and reaped (stop() called twice)
        if p.popen.poll() is None:  # its tier's SIGTERM went out already
            try:
                p.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.error(
                    "%s did not exit within %.1f s of SIGTERM: SIGKILL to its process group",
                    p.name,
                    timeout_s,
                )
        # whatever is left of the group (the leader if it ignored SIGTERM, grandchildren)
        leftovers = group_members(pgid)
        if leftovers:
            log.warning(
                "%s: killing %d leftover process(es) of its group: %s", p.name, len(leftovers), leftovers
            )
            _killpg(pgid, signal.SIGKILL)
        code = p.popen.wait(timeout=10.0)
        deadline = time.monotonic() + 5.0
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)
        log.info("%s exited with code %d", p.name, code)
        return code

    def __enter__(self) -> CellProcesses:
        return self.start() if self.autostart else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- guard ---------------------------------------------------------------------------

    def _install_guard(self) -> None:
        _LIVE.add(self)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old = signal.getsignal(sig)
            if old in (signal.SIG_DFL, None):  # never override an application's own handler
                self._old_handlers[sig] = old
                signal.signal(sig, _raise_exit)

    def _remove_guard(self) -> None:
        _LIVE.discard(self)
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._old_handlers.items():
                if signal.getsignal(sig) is _raise_exit:
                    signal.signal(sig, old or signal.SIG_DFL)
        self._old_handlers.clear()

    def _emergency_kill(self) -> None:
        for p in self.procs:
            _killpg(p.pid, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_exit(signum: int, _frame: Any) -> None:
    # unwinds to CellProcesses.__exit__ / the caller's finally: the orderly stop() runs
    raise SystemExit(128 + signum)


@atexit.register
def _kill_leftovers() -> None:
    for cp in list(_LIVE):
        cp._emergency_kill()


# --- readiness -------------------------------------------------------------------------------


def wait_for_nodes(
    names: Iterable[str | NodeSpec],
    timeout_s: float = 30.0,
    *,
    lifecycle: Iterable[str] = (),
    context: Any = None,
    domain_id: int | None = None,
    poll_s: float = 0.1,
    check: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Wait until every node is in the ROS graph and every lifecycle node is ACTIVE.

    Args:
        names: node names or NodeSpecs (a spec's ``lifecycle`` flag counts as ``lifecycle``).
        lifecycle: names whose ``/<name>/get_state`` must answer ``active``.
        context: an initialised rclpy Context to use (default: a private one on
            ``domain_id`` / ``ROS_DOMAIN_ID``, shut down afterwards).
        check: called every poll (e.g. raise when a process died: ``CellProcesses.poll``).

    Returns:
        name -> "present" (plain node) or the lifecycle state label ("active").

    Raises:
        TimeoutError: listing the nodes missing from the graph and the lifecycle nodes with
            their last known state.
    """
    import rclpy
    from lifecycle_msgs.srv import GetState
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    wanted: list[str] = []
    lc = set(lifecycle)
    for n in names:
        if isinstance(n, NodeSpec):
            wanted.append(n.name)
            if n.lifecycle:
                lc.add(n.name)
        else:
            wanted.append(n)
    own = context is None
    if own:
        context = Context()
        context.init(
            domain_id=domain_id if domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
        )
    node = rclpy.create_node(
        f"wait_for_nodes_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}",
        context=context,
        start_parameter_services=False,
    )
    exe = SingleThreadedExecutor(context=context)
    exe.add_node(node)
    clients = {n: node.create_client(GetState, f"/{n}/get_state") for n in wanted if n in lc}
    states: dict[str, str] = {n: "missing" for n in wanted}
    pending: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            present = {
                ("/" + nm if ns == "/" else f"{ns}/{nm}").lstrip("/")
                for nm, ns in node.get_node_names_and_namespaces()
            }
            for n in wanted:
                if n not in present:
                    states[n] = "missing"
                elif n not in lc:
                    states[n] = "present"
                else:
                    f, sent = pending.get(n, (None, 0.0))
                    if f is not None and f.done():
                        del pending[n]
                        try:
                            states[n] = f.result().current_state.label
                        except Exception:  # noqa: BLE001
                            states[n] = "no answer"
                    elif f is not None and time.monotonic() - sent > ASK_AGAIN_S:
                        # a reply can be lost while discovery is still matching the service's
                        # reader and writer: ask again rather than wait for it forever
                        clients[n].remove_pending_request(f)
                        del pending[n]
                    if states[n] != "active" and n not in pending and clients[n].service_is_ready():
                        pending[n] = (clients[n].call_async(GetState.Request()), time.monotonic())
                    elif states[n] == "missing":
                        states[n] = "no get_state service"
            if all(states[n] == ("active" if n in lc else "present") for n in wanted):
                return dict(states)
            if check is not None:
                check()
            if time.monotonic() > deadline:
                missing = [n for n in wanted if states[n] == "missing"]
                not_active = {
                    n: states[n] for n in wanted if n in lc and states[n] not in ("active", "missing")
                }
                raise TimeoutError(
                    f"nodes not ready after {timeout_s} s: missing from the graph: "
                    f"{missing or 'none'}; lifecycle nodes not active: {not_active or 'none'}"
                )
            exe.spin_once(timeout_sec=poll_s)
    finally:
        for n, (f, _sent) in pending.items():
            clients[n].remove_pending_request(f)
        exe.remove_node(node)
        exe.shutdown(timeout_sec=0)
        node.destroy_node()
        if own:
            context.try_shutdown()


ASK_AGAIN_S = 2.0
"""wait_for_nodes: a get_state request unanswered this long (wall s) is dropped and sent again."""


def wait_for_output(procs: CellProcesses, name: str, text: str, timeout_s: float = 120.0) -> None:
    """Wait until process ``name`` printed ``text`` in its log (e.g. the emulator's ready line).

    Raises:
        TimeoutError: not printed in time; RuntimeError: the process exited first.
    """
    path = procs.log_dir / f"{name}.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if text in path.read_text(errors="replace"):
                return
        except FileNotFoundError:
            pass
        for dead, rc in procs.poll():
            if dead == name:
                raise RuntimeError(f"{name} exited with code {rc} before printing {text!r} (log: {path})")
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not print {text!r} within {timeout_s:.0f} s (log: {path})")


def process_equipment_enabled(config_dir: str | Path) -> bool:
    """``config/cell.yaml`` ``process_equipment.enabled`` (False when absent or unreadable: the
    full configuration check is the nodes' own ``configure``)."""
    import yaml

    try:
        data = yaml.safe_load((Path(config_dir) / "cell.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    pe = data.get("process_equipment") if isinstance(data, dict) else None
    return isinstance(pe, dict) and pe.get("enabled") is True
