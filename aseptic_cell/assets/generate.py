"""Generate every asset from a configuration directory; write or compare them."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from .urdf import urdf_text
from .world import bridge_yaml, controllers_yaml, sdf_text

URDF_FILE = "aseptic_cell_arm.urdf"
WORLD_FILE = "isolator.sdf"
BRIDGE_FILE = "ros_gz_bridge.yaml"
CONTROLLERS_FILE = "controllers.yaml"
ASSET_FILES = (URDF_FILE, WORLD_FILE, BRIDGE_FILE, CONTROLLERS_FILE)


def default_assets_dir() -> Path:
    """``sim/assets`` of the source tree (the committed copies)."""
    return Path(__file__).resolve().parents[2] / "sim" / "assets"


def generate(config_dir: str | Path) -> dict[str, str]:
    """File name -> text of every asset, from a (validated) configuration directory."""
    cfg = load_config(config_dir)
    return {URDF_FILE: urdf_text(cfg.arm), WORLD_FILE: sdf_text(cfg.geometry), BRIDGE_FILE: bridge_yaml(),
            CONTROLLERS_FILE: controllers_yaml(cfg.arm)}


def write_assets(config_dir: str | Path, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate(config_dir).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_assets(config_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Names of the assets in ``out_dir`` that are missing or differ from a regeneration."""
    out = Path(out_dir)
    return [name for name, text in generate(config_dir).items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
