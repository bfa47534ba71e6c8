"""A throwaway PostgreSQL cluster for the record tests and ``benchmarks/records.py``.

Debian's ``postgresql`` package (scripts/ensure_system_deps.sh) provides the server binaries and
the unprivileged ``postgres`` system user. ``initdb`` refuses to run as root, so when this runs as
root the cluster is created and started as ``postgres`` (``runuser``) in a temp dir it owns. The
server listens on a unix socket in that dir only (``listen_addresses=''``), fsync stays on.
Roles: ``record_admin`` (owns the schema, installs it) and ``cell_writer`` (INSERT/SELECT only),
both with trust authentication on the private socket (a site uses its own roles and secrets).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ADMIN_ROLE = "record_admin"
WRITER_ROLE = "cell_writer"
DB_NAME = "cell_records"


def pg_bindir() -> Path | None:
    """Directory of the newest installed PostgreSQL server binaries (None: not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """``with TempPostgres() as pg:`` -> ``pg.dsn(role)``; the cluster is removed on exit."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (scripts/ensure_system_deps.sh installs them)")
        self.bindir = bindir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cellrec-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.dir.chmod(0o700)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        proc = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()[-800:]}")

    def start(self) -> TempPostgres:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", ADMIN_ROLE, "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions", "--no-sync")  # the server itself fsyncs
        opts = (f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=on -c synchronous_commit=on "
                "-c shared_buffers=16MB -c max_connections=40")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                  "-t", "60", "-o", opts, "start")
        import psycopg

        with psycopg.connect(self.dsn(ADMIN_ROLE, "postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {ADMIN_ROLE}")
            conn.execute(f"CREATE ROLE {WRITER_ROLE} LOGIN")
        return self

    def dsn(self, role: str = WRITER_ROLE, dbname: str = DB_NAME) -> str:
        return f"host={self.dir} port={self.port} user={role} dbname={dbname}"

    def stop(self) -> None:
        deadline = time.monotonic() + 30
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            while time.monotonic() < deadline and (self.data / "postmaster.pid").exists():
                time.sleep(0.05)
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
