"""Robot and cell description for Gazebo and MuJoCo, generated from ``config/``.

One source of truth: ``config/arm.yaml`` (DH table, joint limits, collision capsules) and
``config/geometry.yaml`` (walls, equipment). :func:`generate` returns every asset as text;
:func:`write_assets` writes them under ``sim/assets/`` (``cellctl assets``).
"""

from __future__ import annotations

from .generate import ASSET_FILES, default_assets_dir, generate, write_assets

__all__ = ["ASSET_FILES", "default_assets_dir", "generate", "write_assets"]
