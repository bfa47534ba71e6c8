"""Batch executive (ISA-88 procedural control): phase state machine in :mod:`.states`."""
