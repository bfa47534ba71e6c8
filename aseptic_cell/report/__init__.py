"""Review by exception and the human-readable batch report of a batch record (issue 15 items 2-3).

``cellctl record report FILE --pdf|--html -o OUT`` and ``cellctl record review FILE --user ID``
(:mod:`.cli`); the HMI's ``GET /api/record/report``. Reads a record file read-only; the only
write is the reviewer's signature (:func:`sign_reviewed`, through the record store).
"""

from .batch_report import BatchReport, build_report, render_html, render_pdf
from .exceptions import (
    CATEGORIES,
    DEFAULT_MIN_PRIORITY,
    PRIORITIES,
    Departure,
    ExceptionReview,
    ReviewRefused,
    review_by_exception,
    sign_reviewed,
)
from .source import BatchSource, ReportError, batch_ids, load_batch

__all__ = [
    "CATEGORIES",
    "DEFAULT_MIN_PRIORITY",
    "PRIORITIES",
    "BatchReport",
    "BatchSource",
    "Departure",
    "ExceptionReview",
    "ReportError",
    "ReviewRefused",
    "batch_ids",
    "build_report",
    "load_batch",
    "render_html",
    "render_pdf",
    "review_by_exception",
    "sign_reviewed",
]
