"""Run the real description parsers: ``check_urdf`` (urdfdom) and ``ign sdf -k`` (sdformat12).

Each returns the list of problems (empty = accepted). ``check_urdf`` exits 0 on some errors (an
unknown geometry type is reported on stderr and skipped), so any line starting ``Error`` on
stderr counts as a problem too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_IGN_NOISE = "Library error: libignition-tools-backward.so not found"


class ValidatorMissing(RuntimeError):
    """A validator tool is not installed (the set-up installs it: scripts/ensure_system_deps.sh)."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ValidatorMissing(f"{name} not found: install it with scripts/ensure_system_deps.sh")
    return path


def check_urdf(path: str | Path, timeout_s: float = 30.0) -> list[str]:
    proc = subprocess.run([_tool("check_urdf"), str(path)], capture_output=True, text=True, timeout=timeout_s)
    problems = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip().lower().startswith("error")]
    if proc.returncode != 0:
        problems.insert(0, f"check_urdf exit code {proc.returncode}")
    return problems


def ign_sdf_check(path: str | Path, timeout_s: float = 60.0) -> list[str]:
    proc = subprocess.run([_tool("ign"), "sdf", "-k", str(path)], capture_output=True, text=True,
                          timeout=timeout_s)
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines()
             if ln.strip() and _IGN_NOISE not in ln]
    problems = [ln for ln in lines if "error" in ln.lower()]
    if proc.returncode != 0:
        problems.insert(0, f"ign sdf -k exit code {proc.returncode}")
    elif "Valid." not in lines:
        problems.append("ign sdf -k did not print 'Valid.'")
    return problems


def validator_versions() -> dict[str, str]:
    """Debian package versions of the validators (dpkg), for reports."""
    out: dict[str, str] = {}
    for pkg in ("liburdfdom-tools", "libsdformat12", "ignition-tools"):
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = proc.stdout.strip() if proc.returncode == 0 else "not installed"
    return out
