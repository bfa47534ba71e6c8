"""Supervisor interlock engine (ROS-free): the catalogue in ``config/interlocks.yaml`` evaluated
against the latest device signals, before every command and on every tick."""

from .engine import Clause, Decision, InterlockEngine, Reason, RuleStatus, Trip, placeholders_of
from .signals import KNOWN_SIGNALS, Sample, SignalDoc, SignalTable, unknown_signals

__all__ = [
    "KNOWN_SIGNALS", "Clause", "Decision", "InterlockEngine", "Reason", "RuleStatus", "Sample",
    "SignalDoc", "SignalTable", "Trip", "placeholders_of", "unknown_signals",
]
