"""Deviations and QA disposition of a batch record (issue 15 items 1 and 4).

:mod:`.deviations` — the deviation entries, their lifecycle folded from the record, the policy of
``config/deviations.yaml`` and the automatic raising rules the supervisor's journal applies;
:mod:`.qa` — raise / classify / investigate / close a deviation, release or reject a batch, the
signed post-release correction. CLI: ``cellctl record deviation|disposition``; HMI:
``aseptic_cell/hmi/disposition_api.py``.
"""

from .deviations import CLASSES, AutoRaiser, Deviation, DeviationError, DeviationPolicy, fold
from .qa import (
    check_disposition,
    classify,
    close_deviation,
    correct_after_release,
    deviations,
    dispose,
    disposition_status,
    investigate,
    last_batch,
    raise_deviation,
)

__all__ = [
    "CLASSES",
    "AutoRaiser",
    "Deviation",
    "DeviationError",
    "DeviationPolicy",
    "check_disposition",
    "classify",
    "close_deviation",
    "correct_after_release",
    "deviations",
    "disposition_status",
    "dispose",
    "fold",
    "investigate",
    "last_batch",
    "raise_deviation",
]
