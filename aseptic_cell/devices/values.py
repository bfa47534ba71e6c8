"""Reading a device's raw values safely: a missing or malformed value is never a safe-looking
default (NaN for arithmetic, None for "unknown", which every interlock treats as unsafe)."""

from __future__ import annotations

import math
from typing import Any

ATMOSPHERIC_KPA = 101.325  # standard atmosphere [ISO2533]

Refusal = tuple[str, str] | None
"""A hard interlock's verdict: (code, reason) to refuse, None to allow."""


def num_or_nan(v: Any) -> float:
    """A reading as a float; NaN when missing or not a number."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def num_or_none(v: Any) -> float | None:
    """A finite reading as a float; None (unknown) otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def bool_or_none(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None
