#!/usr/bin/env python3
"""Symlink setup.py's data_files into a prefix (default: the running venv), colcon
`--symlink-install` style.

Why: `pip install -e .` (setuptools 84) silently skips data_files (its editable_wheel
asks the Distribution for `has_data`, which does not exist; the method is
`has_data_files`). So share/ament_index/.../aseptic_cell, share/aseptic_cell/package.xml,
launch/ and config/ would be missing from the venv. Links keep them live: an edited
config/*.yaml is seen at once; only added/removed files need a re-run (make venv does it).

Usage: python scripts/link_data_files.py [PREFIX]
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ".aseptic_cell-data-links"


def data_files_of_setup_py() -> list[tuple[str, list[str]]]:
    captured: dict = {}
    real_setup = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)  # type: ignore[assignment]
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    return captured.get("data_files", [])


def main() -> None:
    prefix = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix).resolve()
    manifest = prefix / MANIFEST
    old = set(manifest.read_text().split("\n")) - {""} if manifest.exists() else set()

    new: set[str] = set()
    for dest_dir, sources in data_files_of_setup_py():
        for src in sources:
            target = prefix / dest_dir / Path(src).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                if target.is_dir() and not target.is_symlink():
                    raise SystemExit(f"link_data_files: {target} is a directory")
                target.unlink()
            target.symlink_to(ROOT / src)
            new.add(str(target))

    for stale in sorted(old - new):
        path = Path(stale)
        if path.is_symlink():
            path.unlink()
    manifest.write_text("".join(f"{p}\n" for p in sorted(new)))
    print(f"link_data_files: {len(new)} links under {prefix}/share", file=sys.stderr)


if __name__ == "__main__":
    main()
