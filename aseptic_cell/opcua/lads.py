"""LADS (OPC 30500) program execution on an emulated device server (issue 18): the functional unit
that runs the device's programs gets its ``FunctionalUnitState`` (``FunctionalUnitStateMachineType``)
with the ``Start``/``StartProgram``/``Stop``/``Abort``/``Clear`` methods, and a ``ProgramManager``
(``ProgramManagerType``) with the program templates (the VHP cycles of ``config/vhp_cycles.yaml``,
the autoclave programs of ``config/autoclave_programs.yaml``), the ``ActiveProgram`` and a
``ResultSet`` holding one ``ResultType`` object per finished run.

The methods are the device's own commands (the mapping is the ``LADS_PROGRAMS`` dict of the
device's contract, e.g. ``StartProgram`` -> ``start_cycle``, ``Stop``/``Abort`` -> ``abort``) run
through :meth:`EmulatedWorld.command`, the path of the project's ``Methods/<command>``: the same
device refusals, the same log line, and the same role check (``emulator.security.command_roles`` on a
``sign_and_encrypt`` server, where the operator is the session's account).

State machine (LADS FunctionalStateMachineType states; the device's readings decide):

* ``Stopped``: no program runs (initial state; a run that completed, or was stopped, ends here).
* ``Running``: the device reports a program running (``LADS_PROGRAMS["active"]``).
* ``Stopping`` / ``Aborting``: Stop / Abort was asked, or the device failed the run
  (``status.failed``), while the device still runs its safe end (VHP aeration, autoclave venting).
* ``Aborted``: the run ended after an Abort or a device-detected failure. Latched: only ``Clear``
  leaves it (``Clearing`` -> ``Stopped``); ``Start``/``StartProgram`` are refused there with
  ``BadInvalidState`` (never an automatic restart after a trip).

Refusals are OPC UA status codes (the standard methods have no reason output): ``BadInvalidState``
(wrong state, or the device refused; the device's code and reason are logged),
``BadInvalidArgument`` (unknown template, bad properties, no operator), ``BadUserAccessDenied``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asyncua import Node, ua

from .companion import add_typed_object, child, set_value
from .uatyping import node_id, status_code

if TYPE_CHECKING:
    from .emulator import DeviceServer

log = logging.getLogger("aseptic_cell.emulator.lads")

LADS_FUNCTIONAL_STATE_MACHINE_TYPE = 1038  # FunctionalStateMachineType (its states)
LADS_PROGRAM_MANAGER_TYPE = 1006  # ProgramManagerType
LADS_PROGRAM_TEMPLATE_TYPE = 1018  # ProgramTemplateType
LADS_RESULT_TYPE = 1021  # ResultType
LADS_KEY_VALUE_TYPE = 3003  # KeyValueType (String Key, String Value)
LADS_SAMPLE_INFO_TYPE = 3002  # SampleInfoType

STATES = ("Stopped", "Running", "Stopping", "Aborting", "Aborted", "Clearing")
ENDING = ("Running", "Stopping", "Aborting")


def _arg(name: str, dtype: ua.NodeId, desc: str, rank: int = -1) -> ua.Argument:
    a = ua.Argument()
    a.Name, a.DataType, a.ValueRank = name, dtype, rank
    a.ArrayDimensions = [] if rank < 0 else [0]
    a.Description = ua.LocalizedText(desc)
    return a


def _values(args: tuple[Any, ...]) -> list[Any]:
    return [a.Value if isinstance(a, ua.Variant) else a for a in args]


def properties(raw: Any) -> dict[str, str]:
    """LADS ``Properties`` (KeyValueType[]: Key, Value strings) as a dict; ValueError if malformed."""
    out: dict[str, str] = {}
    for kv in raw or []:
        key, value = getattr(kv, "Key", None), getattr(kv, "Value", None)
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValueError(f"Properties: each entry needs a string Key and Value, got {kv!r}")
        if key in out:
            raise ValueError(f"Properties: key {key!r} given twice")
        out[key] = value
    return out


class LadsProgramUnit:
    """The program-running functional unit of one device server."""

    def __init__(self, dev: DeviceServer, unit: Node, lads_ns: int, mapping: Mapping[str, Any]) -> None:
        self.dev, self.unit, self.lads, self.map = dev, unit, lads_ns, mapping
        self.state = "Stopped"
        self.request: str | None = None  # "stop" | "abort": asked over LADS for the current run
        self.state_ids: dict[str, ua.NodeId] = {}
        self.cur: Node | None = None
        self.cur_id: Node | None = None
        self.active_nodes: dict[str, Node] = {}
        self.results: Node | None = None
        self.result_ids: list[str] = []
        self.run: dict[str, Any] = {}
        self.templates: dict[str, Any] = {}

    # ------------------------------------------------------------------ address space
    def _nid(self, suffix: str) -> ua.NodeId:
        return self.dev._nid(f"{self.dev.device_id}/lads/{self.map['unit']}/{suffix}")  # noqa: SLF001

    def _qn(self, name: str) -> ua.QualifiedName:
        return ua.QualifiedName(name, self.lads)

    async def build(self, values: Mapping[str, Any]) -> None:
        server = self.dev.server
        assert server is not None
        lads, nss = self.lads, (0, self.lads, self.dev.companion.ns["DI"] if self.dev.companion else 0)
        fsm_type = server.get_node(node_id(LADS_FUNCTIONAL_STATE_MACHINE_TYPE, lads))
        for ch in await fsm_type.get_children():
            name = (await ch.read_browse_name()).Name
            if name in STATES:
                self.state_ids[name] = ch.nodeid
        fus = await child(self.unit, ["FunctionalUnitState"], nss)
        if fus is None:
            log.warning("%s: FunctionalUnitState missing on %s", self.dev.device_id, self.map["unit"])
            return
        self.cur = await child(fus, ["CurrentState"], nss)
        if self.cur is None:  # asyncua copies the instance declarations of FunctionalUnitType only
            copy_log = logging.getLogger("asyncua.common.copy_node_util")
            level = copy_log.level
            copy_log.setLevel(logging.ERROR)  # (a VariableType has no access level to copy: harmless)
            try:
                self.cur = await add_typed_object(server, fus, self._nid("sm/CurrentState"),
                                                  ua.QualifiedName("CurrentState", 0),
                                                  node_id(ua.ObjectIds.FiniteStateVariableType))
            finally:
                copy_log.setLevel(level)
        self.cur_id = await child(self.cur, ["Id"], nss) if self.cur is not None else None
        s, kv, samples = ua.VariantType.String, node_id(LADS_KEY_VALUE_TYPE, lads), node_id(LADS_SAMPLE_INFO_TYPE, lads)
        string = node_id(s.value)
        props = _arg("Properties", kv, "KeyValueType[]: Operator (mode none), RunId, and the device's own keys", 1)
        start_in = [_arg("ProgramTemplateId", string, "DeviceTemplateId of a ProgramTemplateSet entry"), props,
                    _arg("SupervisoryJobId", string, "the batch / job id, kept in the result"),
                    _arg("SupervisoryTaskId", string, "the task id, kept in the result"),
                    _arg("Samples", samples, "SampleInfoType[] (not used by this device)", 1)]
        run_out = [_arg("DeviceProgramRunId", string, "the device's run id")]
        for mname, handler, ins, outs in (
            ("StartProgram", self._start_program, start_in, run_out),
            ("Start", self._start, [props], []),
            ("Stop", self._stop, [], []),
            ("Abort", self._abort, [], []),
            ("Clear", self._clear, [], []),
        ):
            await fus.add_method(self._nid(f"sm/{mname}"), self._qn(mname), handler, ins, outs)
        pm = await add_typed_object(server, self.unit, self._nid("pm"), self._qn("ProgramManager"),
                                    node_id(LADS_PROGRAM_MANAGER_TYPE, lads))
        tset = await child(pm, ["ProgramTemplateSet"], nss)
        self.results = await child(pm, ["ResultSet"], nss)
        ap = await child(pm, ["ActiveProgram"], nss)
        cfg_set = getattr(self.dev.world.cell.cfg, self.map["templates"])
        for t in getattr(cfg_set, "cycles", None) or getattr(cfg_set, "programs", []):
            self.templates[t.id] = t
            if tset is None:
                continue
            node = await add_typed_object(server, tset, self._nid(f"pt/{t.id}"), self._qn(t.id),
                                          node_id(LADS_PROGRAM_TEMPLATE_TYPE, lads))
            for key, value in (("DeviceTemplateId", t.id), ("Version", str(getattr(t, "version", "") or "")),
                               ("Description", ua.LocalizedText(t.description or "")),
                               ("Author", f"site configuration {self.map['templates']}.yaml")):
                await set_value(await child(node, [key], nss), value)
        if ap is not None:
            for pname, value, vtype in (
                ("DeviceProgramRunId", "", ua.VariantType.String),
                ("CurrentStepName", ua.LocalizedText(""), ua.VariantType.LocalizedText),
                ("CurrentRuntime", 0.0, ua.VariantType.Double),  # Duration, ms
                ("CurrentStepRuntime", 0.0, ua.VariantType.Double),
            ):
                self.active_nodes[pname] = await ap.add_property(self._nid(f"ap/{pname}"), self._qn(pname),
                                                                 ua.Variant(value, vtype))
        self.state = "Running" if values.get(self.map["active"]) else "Stopped"
        await self._write_state(self.state)

    async def _write_state(self, state: str) -> None:
        server = self.dev.server
        if server is None or self.cur is None:
            return
        await server.write_attribute_value(
            self.cur.nodeid, ua.DataValue(ua.Variant(ua.LocalizedText(state), ua.VariantType.LocalizedText)))
        if self.cur_id is not None:
            await server.write_attribute_value(self.cur_id.nodeid, ua.DataValue(
                ua.Variant(self.state_ids.get(state, ua.NodeId()), ua.VariantType.NodeId)))

    # ------------------------------------------------------------------ values
    async def update(self, values: Mapping[str, Any]) -> None:
        """Follow the device: called with every published set of readings."""
        active = values.get(self.map["active"]) is True
        failed = values.get("status.failed") is True
        if active:
            if not self.run or self.run.get("run_id") != values.get("status.run_id"):
                self.run = {"run_id": str(values.get("status.run_id") or ""), "t0": values.get("t"),
                            "started": dt.datetime.now(dt.UTC), "template": self.run.get("template", ""),
                            "job": self.run.get("job", ""), "task": self.run.get("task", ""),
                            "user": self.run.get("user", ""), "props": self.run.get("props", {})}
            new = ("Stopping" if self.request == "stop" else
                   "Aborting" if self.request == "abort" or failed else "Running")
            await self._active_program(values)
        elif self.state in ENDING:  # the run ended: its result, then Stopped or (latched) Aborted
            new = "Stopped" if self.request == "stop" or (self.request is None and not failed) else "Aborted"
            await self._record_result(values)
            self.request, self.run = None, {}
        else:
            new = self.state
        if new != self.state:
            log.info("%s LADS %s: %s -> %s", self.dev.device_id, self.map["unit"], self.state, new)
            self.state = new
            await self._write_state(new)

    async def _active_program(self, values: Mapping[str, Any]) -> None:
        t, t0 = values.get("t"), self.run.get("t0")
        elapsed = values.get("status.phase_elapsed_s")
        for name, value in (
            ("DeviceProgramRunId", self.run.get("run_id", "")),
            ("CurrentStepName", ua.LocalizedText(str(values.get("phase") or ""))),
            ("CurrentRuntime", 1000.0 * (t - t0) if isinstance(t, float) and isinstance(t0, float) else 0.0),
            ("CurrentStepRuntime", 1000.0 * elapsed if isinstance(elapsed, (int, float)) else 0.0),
        ):
            node = self.active_nodes.get(name)
            if node is not None:
                await set_value(node, value)

    async def _record_result(self, values: Mapping[str, Any]) -> None:
        """A ResultType object named after the run id: the device's result (get_result) as key values."""
        server = self.dev.server
        run_id = self.run.get("run_id") or str(values.get("status.run_id") or "")
        if server is None or self.results is None or not run_id or run_id in self.result_ids:
            return
        try:
            payload = self.dev.world.cell.command(self.dev.device_id, "get_result", {})
        except Exception:  # noqa: BLE001 - the result object still says the run ended
            log.warning("%s: get_result failed", self.dev.device_id, exc_info=True)
            payload = {}
        res = payload.get("result") if isinstance(payload, dict) else None
        res = res if isinstance(res, dict) else {}
        nss = (0, self.lads)
        node = await add_typed_object(server, self.results, self._nid(f"res/{run_id}"), self._qn(run_id),
                                      node_id(LADS_RESULT_TYPE, self.lads))
        self.result_ids.append(run_id)
        verdict = str(res.get("result") or ("FAIL" if values.get("status.failed") else "UNKNOWN"))
        reasons = res.get("reasons") or values.get("status.reasons") or []
        text = verdict + (": " + "; ".join(map(str, reasons)) if reasons else "")
        kv_class = getattr(ua, "KeyValueType", None)  # LADS KeyValueType, made by load_data_type_definitions
        props = [kv_class(Key=k, Value=v) for k, v in sorted(self.run.get("props", {}).items())] if kv_class else []
        for key, value in (
            ("Description", ua.LocalizedText(text)),
            ("ApplicationUri", f"urn:aseptic-cell:emulator:{self.dev.device_id}"),
            ("User", str(self.run.get("user") or res.get("operator") or "")),
            ("SupervisoryJobId", str(self.run.get("job", ""))),
            ("SupervisoryTaskId", str(self.run.get("task", ""))),
            ("Started", self.run.get("started") or dt.datetime.now(dt.UTC)),
            ("Stopped", dt.datetime.now(dt.UTC)),
        ):
            await set_value(await child(node, [key], nss), value)
        for key, value in (("Properties", props), ("Samples", [])):  # KeyValueType[], SampleInfoType[]
            await set_value(await child(node, [key], nss), value, ua.VariantType.ExtensionObject)
        await node.add_property(self._nid(f"res/{run_id}/DeviceProgramRunId"), self._qn("DeviceProgramRunId"),
                                ua.Variant(run_id, ua.VariantType.String))
        template = await child(node, ["ProgramTemplate"], nss)
        tid = str(self.run.get("template") or res.get("recipe_id") or res.get("program_id") or "")
        if template is not None and tid:  # (asyncua leaves the nested object's properties out: added here)
            t = self.templates.get(tid)
            version = str(res.get("recipe_version") or getattr(t, "version", "") or "")
            for key, value in (("DeviceTemplateId", tid), ("Version", version),
                               ("Description", ua.LocalizedText(getattr(t, "description", "") or ""))):
                if not await set_value(await child(template, [key], nss), value):
                    await template.add_property(self._nid(f"res/{run_id}/pt/{key}"), self._qn(key), value)
        vset = await child(node, ["VariableSet"], nss)
        if vset is None:
            return
        await vset.add_variable(self._nid(f"res/{run_id}/Result"), self._qn("Result"), verdict)
        for key, value in sorted(res.items()):
            if isinstance(value, bool):
                v = ua.Variant(value, ua.VariantType.Boolean)
            elif isinstance(value, (int, float)):
                v = ua.Variant(float(value), ua.VariantType.Double)
            elif isinstance(value, str):
                v = ua.Variant(value, ua.VariantType.String)
            elif key == "reasons":
                v = ua.Variant(json.dumps(value), ua.VariantType.String)
            else:  # series, phases, alarms: the device's full record stays with get_result
                continue
            await vset.add_variable(self._nid(f"res/{run_id}/{key}"), self._qn(key), v)

    # ------------------------------------------------------------------ methods
    def _who(self, what: str) -> str | None:
        return self.dev._session_user(self.dev.settings.security.command_roles, f"LADS {what}")  # noqa: SLF001

    async def _command(self, name: str, args: dict[str, Any], user: str, reason: str) -> tuple[bool, str, str, str]:
        out = await self.dev.world.command(self.dev.device_id, name, json.dumps(args), user, reason)
        accepted, code, why, payload = (v.Value for v in out)
        return bool(accepted), str(code), str(why), str(payload)

    async def _start_program(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        vals = _values(args) + [None] * 5
        template, raw_props, job, task = vals[0], vals[1], vals[2], vals[3]
        return await self._run_start("StartProgram", template, raw_props, job, task)

    async def _start(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        vals = _values(args) + [None]
        try:
            props = properties(vals[0])
        except ValueError as exc:
            log.warning("%s LADS Start refused: %s", self.dev.device_id, exc)
            return status_code(ua.StatusCodes.BadInvalidArgument)
        out = await self._run_start("Start", props.get("ProgramTemplateId"), vals[0], "", "")
        return out if isinstance(out, ua.StatusCode) else []

    async def _run_start(self, what: str, template: Any, raw_props: Any, job: Any,
                         task: Any) -> list[ua.Variant] | ua.StatusCode:
        who = self._who(what)
        if who is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        try:
            props = properties(raw_props)
            if not isinstance(template, str) or template not in self.templates:
                raise ValueError(f"ProgramTemplateId {template!r} is not one of {sorted(self.templates)}")
            operator = who or props.get("Operator", "")
            if who and props.get("Operator", who) != who:
                raise ValueError(f"Operator {props['Operator']!r} is not the session's account {who!r}")
            if not operator.strip():
                raise ValueError("no operator: give Properties Operator=<user id> (or log in)")
            unknown = set(props) - {"Operator", "RunId", "ProgramTemplateId", *self.map["property_args"]}
            if unknown:
                raise ValueError(f"unknown Properties {sorted(unknown)}")
        except ValueError as exc:
            log.warning("%s LADS %s refused: %s", self.dev.device_id, what, exc)
            return status_code(ua.StatusCodes.BadInvalidArgument)
        if self.state != "Stopped":
            log.warning("%s LADS %s refused: functional unit is %s (Clear an Aborted unit first)",
                        self.dev.device_id, what, self.state)
            return status_code(ua.StatusCodes.BadInvalidState)
        args: dict[str, Any] = {self.map["template_arg"]: template, self.map["operator_arg"]: operator}
        if props.get("RunId"):
            args[self.map["run_id_arg"]] = props["RunId"]
        for key, arg in self.map["property_args"].items():
            if key in props:
                args[arg] = props[key]
        self.request = None
        self.run = {"template": template, "job": str(job or ""), "task": str(task or ""), "user": operator,
                    "props": props}
        ok, code, why, payload = await self._command(self.map["start"], args, operator, f"LADS {what}")
        if not ok:
            self.run = {}
            log.warning("%s LADS %s refused by the device: %s %s", self.dev.device_id, what, code, why)
            return status_code(ua.StatusCodes.BadInvalidArgument if code == "INVALID"
                               else ua.StatusCodes.BadInvalidState)
        run_id = str(json.loads(payload or "{}").get("run_id") or self.run.get("run_id") or "")
        return [ua.Variant(run_id, ua.VariantType.String)]

    async def _stop_or_abort(self, what: str) -> list[ua.Variant] | ua.StatusCode:
        who = self._who(what)
        if who is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        if self.state not in ENDING:
            return status_code(ua.StatusCodes.BadInvalidState)
        user = who or str(self.run.get("user") or "lads-client")
        before = self.request
        if self.request != "abort":  # an Abort during Stopping wins
            self.request = "stop" if what == "Stop" else "abort"
        ok, code, why, _ = await self._command(self.map["abort"], {"user": user, "reason": f"LADS {what}"},
                                               user, f"LADS {what}")
        if not ok:
            self.request = before
            log.warning("%s LADS %s refused by the device: %s %s", self.dev.device_id, what, code, why)
            return status_code(ua.StatusCodes.BadInvalidState)
        return []

    async def _stop(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        return await self._stop_or_abort("Stop")

    async def _abort(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        return await self._stop_or_abort("Abort")

    async def _clear(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant] | ua.StatusCode:
        who = self._who("Clear")
        if who is None:
            return status_code(ua.StatusCodes.BadUserAccessDenied)
        if self.state != "Aborted":
            return status_code(ua.StatusCodes.BadInvalidState)
        log.warning("%s LADS %s: Clear by %r (Aborted -> Stopped)", self.dev.device_id, self.map["unit"],
                    who or "device session")
        await self._write_state("Clearing")
        self.state = "Stopped"
        await self._write_state("Stopped")
        return []
