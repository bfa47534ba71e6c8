"""The device-level address space contract shared by the emulator, the bridge backend and the
node-opcua device server (``interop/device_server.js`` follows the same names).

One OPC UA server per device. Namespace URI :data:`NS_URI`; every node the bridge uses has a
string NodeId built here, so a server from any stack that follows this page can be driven::

    Objects/
      DeviceSet/                                  (DI convention)
        <ID>                                      (LADS Device | Robotics MotionDeviceSystem)
          Identification/  Manufacturer, Model, SerialNumber, ProductInstanceUri,
                           DeviceClass, SoftwareRevision                  (Machinery / DI)
          MachineryItemState/CurrentState         NotAvailable|OutOfService|NotExecuting|Executing
          MachineryOperationMode/CurrentState     Processing|Maintenance|Setup|None
          SimTime                    s=<ID>/SimTime        Double: the device's own time (s)
          ProcessImage/              s=<ID>/pi/<key>       one variable per reading (the PLC's
                                                           tag table); BrowseName = the reading key
          Records/                   s=<ID>/rec/<key>      String: JSON of list/dict readings
          FunctionalUnitSet/<FU>/FunctionSet/...           (LADS; isolator, vhp, autoclave)
          ProgramManager/ProgramTemplateSet, ActiveProgram (LADS; vhp, autoclave)
          MotionDevices/<ID>/Axes/<joint>/ParameterSet/{ActualPosition, ActualSpeed},
          SafetyStates/<ID>_Safety/ParameterSet/{OperationalMode, EmergencyStop,
          ProtectiveStop}                                  (OPC 40010 Robotics; arm)
          Methods/                   s=<ID>/m/<command>    one method per catalogue command
          Emulator/                  s=<ID>/emu/InjectFault, s=<ID>/emu/ClearFault (emulator only)

The companion-shaped folders *organize* (Organizes references) the same ProcessImage
variables, so a SCADA client browsing LADS/Robotics/Machinery structure and the bridge reading
the tag table see the very same nodes.

Methods (one per command of :data:`aseptic_cell.devices.commands.CATALOGUE`, plus the fault
hooks): inputs ``ArgsJson`` (String: a JSON object of the catalogue arguments), ``User``
(String), ``Reason`` (String); outputs ``Accepted`` (Boolean), ``Code`` (String), ``Reason``
(String), ``PayloadJson`` (String). A refusal by the device is an answer (Accepted=false with
the device's code), not a Bad status. ``InjectFault(Fault, ParamsJson)`` / ``ClearFault(Fault)``
take the sim's fault names (``sensor:<key>`` with ``{"mode": "nan"}``...).

Value types: Boolean, Int64, Double, String as the reading is; a reading that has no value yet
(``None``) is a BaseDataType variable holding a Null variant. NaN and ±inf are served as the
Double they are (never replaced by a plausible number).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..devices.commands import CONTRACTS

NS_URI = "urn:aseptic-cell:device"
ARG_NAMES_IN = ("ArgsJson", "User", "Reason")
ARG_NAMES_OUT = ("Accepted", "Code", "Reason", "PayloadJson")

# Per device kind, from its contract (aseptic_cell/devices/<kind>/contract.py): the LADS
# functional units ((FU name, reading-key prefixes); first match wins), class and model name.
FUNCTIONAL_UNITS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    k: m.FUNCTIONAL_UNITS for k, m in CONTRACTS.items() if m.FUNCTIONAL_UNITS}
DEVICE_CLASS = {k: m.DEVICE_CLASS for k, m in CONTRACTS.items()}
MODEL = {k: m.MODEL for k, m in CONTRACTS.items()}


def nid_device(dev: str) -> str:
    return dev


def nid_reading(dev: str, key: str) -> str:
    return f"{dev}/pi/{key}"


def nid_record(dev: str, key: str) -> str:
    return f"{dev}/rec/{key}"


def nid_simtime(dev: str) -> str:
    return f"{dev}/SimTime"


def nid_method(dev: str, command: str) -> str:
    return f"{dev}/m/{command}"


def nid_fault(dev: str, name: str) -> str:
    return f"{dev}/emu/{name}"


def nid_folder(dev: str, name: str) -> str:
    return f"{dev}/{name}"


def functional_unit(kind: str, key: str) -> str | None:
    for fu, prefixes in FUNCTIONAL_UNITS.get(kind, ()):
        if any(key.startswith(p) for p in prefixes):
            return fu
    return None


def is_record(value: Any) -> bool:
    return isinstance(value, (list, tuple, dict))


def plain(value: Any) -> Any:
    """numpy scalars → Python; NaN/inf kept as floats (unlike the JSON form of the readings)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _json_safe(value: Any) -> Any:
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return [_json_safe(v) for v in value.tolist()]
    except ImportError:  # pragma: no cover
        pass
    return value


def record_json(value: Any) -> str:
    return json.dumps(_json_safe(value), sort_keys=True)


def model_readings(model: Any, now: float) -> dict[str, Any]:
    """What the device's controller reports (sensors + ``status.*``), floats as they are.

    Same keys as :meth:`aseptic_cell.sim.cell.SimCell.readings`, but a NaN stays a NaN.
    """
    out = {k: plain(v) for k, v in model.sensors().items()}
    for k, v in model.status().items():
        out.setdefault(f"status.{k}", plain(v))
    out["t"] = float(now)
    return out
