"""Typed configuration of the cell (pydantic v2 models over the YAML files in ``config/``)."""

from .devices import (
    AutoclaveConfig,
    AutoclaveProgram,
    AutoclavePrograms,
    CellLayout,
    IsolatorConfig,
    VHPCycleRecipe,
    VHPCycles,
    VHPUnitConfig,
)
from .interlocks import InterlockCatalogue, InterlockRule
from .loader import CellConfig, ConfigError, ConfigIssue, default_config_dir, load_config, schemas
from .recipes import PHASE_TYPES, BatchRecipe
from .robot import ArmConfig, GeometryConfig

__all__ = [
    "ArmConfig", "AutoclaveConfig", "AutoclaveProgram", "AutoclavePrograms", "BatchRecipe",
    "CellConfig", "CellLayout", "ConfigError", "ConfigIssue", "GeometryConfig", "InterlockCatalogue",
    "InterlockRule", "IsolatorConfig", "PHASE_TYPES", "VHPCycleRecipe", "VHPCycles", "VHPUnitConfig",
    "default_config_dir", "load_config", "schemas",
]
