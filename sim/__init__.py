"""Deterministic device process models (installed as ``aseptic_cell.sim``)."""
