"""ISA-18.2 / IEC 62682 alarm management [ISA18.2] [IEC62682] with the GMP overlay.

The overlay: shelving and out-of-service are e-signed (21 CFR 11.50 [CFR11]).
"""

from .manager import (
    ANNUNCIATED,
    AlarmError,
    AlarmEvent,
    AlarmManager,
    AlarmsFileError,
    AlarmState,
    AlarmStatus,
    UnknownAlarmError,
    load_alarms_file,
)
from .models import (
    DEFAULT_SEVERITY,
    SEVERITY_BANDS,
    AlarmDef,
    AlarmSettings,
    AlarmsFile,
    cross_check,
    database_severity,
)

__all__ = [
    "ANNUNCIATED",
    "DEFAULT_SEVERITY",
    "SEVERITY_BANDS",
    "AlarmDef",
    "AlarmError",
    "AlarmEvent",
    "AlarmManager",
    "AlarmSettings",
    "AlarmState",
    "AlarmStatus",
    "AlarmsFile",
    "AlarmsFileError",
    "UnknownAlarmError",
    "cross_check",
    "database_severity",
    "load_alarms_file",
]
