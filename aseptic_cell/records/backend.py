"""Choosing the record store from the configuration (issue 15 item 9).

``config/record.yaml``::

    record:
      backend: sqlite        # sqlite (embedded default) | postgresql
      chain: cell-01         # postgresql: this cell's chain name in the site database

The PostgreSQL connection string comes from the environment only
(``ASEPTIC_CELL_RECORD_DSN``, with libpq's ``PG*`` variables / ``~/.pgpass`` for the secret);
a ``dsn``, ``password`` or any other key in the file is refused, so a password never sits in
the configuration (21 CFR 11.10(d) [CFR11]; Annex 11 §12 [ANNEX11-2011]).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .seal import Sealer
from .store import BatchRecord, Clock, RecordError

RECORD_DSN_ENV = "ASEPTIC_CELL_RECORD_DSN"
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class RecordSettings:
    backend: str = "sqlite"
    chain: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RecordSettings:
        data = dict(data or {})
        unknown = sorted(set(data) - {"backend", "chain"})
        if unknown:
            raise RecordError(f"record settings: unknown key(s) {', '.join(unknown)} (the PostgreSQL DSN and its "
                              f"password come from the environment: {RECORD_DSN_ENV})")
        backend = str(data.get("backend", "sqlite"))
        if backend not in BACKENDS:
            raise RecordError(f"record settings: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        return cls(backend, str(data.get("chain", "") or ""))


def load_record_settings(config_dir: str | os.PathLike[str]) -> RecordSettings:
    """``record:`` of ``<config_dir>/record.yaml``; the SQLite default when the file is absent."""
    p = Path(config_dir) / "record.yaml"
    if not p.is_file():
        return RecordSettings()
    doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, Mapping) or not isinstance(doc.get("record", {}), Mapping):
        raise RecordError(f"{p}: expected a mapping 'record:'")
    return RecordSettings.from_mapping(doc.get("record"))


def open_record(settings: RecordSettings, clock: Clock, *, sqlite_path: str | os.PathLike[str],
                default_chain: str = "cell", sealer: Sealer | None = None,
                environ: Mapping[str, str] | None = None) -> Any:
    """The configured store: a :class:`~.store.BatchRecord` on ``sqlite_path`` or a
    :class:`~.pg.PgBatchRecord` on ``$ASEPTIC_CELL_RECORD_DSN`` (chain ``settings.chain`` or
    ``default_chain``). Both have the same API and fail-safe contract.

    Raises:
        RecordError: postgresql chosen but no DSN in the environment, or the server unreachable.
    """
    if settings.backend == "sqlite":
        return BatchRecord(sqlite_path, clock, sealer=sealer)
    env = os.environ if environ is None else environ
    dsn = env.get(RECORD_DSN_ENV, "").strip()
    if not dsn:
        raise RecordError(f"record backend postgresql: set {RECORD_DSN_ENV} (a libpq connection string; the "
                          "password from PGPASSWORD or ~/.pgpass, never in the configuration)")
    from .pg import PgBatchRecord

    return PgBatchRecord(dsn, settings.chain or default_chain, clock, sealer=sealer)
