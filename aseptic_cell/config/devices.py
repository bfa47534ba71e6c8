"""The cell layout (``config/cell.yaml``). Each device's own configuration model lives with the
device (``aseptic_cell/devices/<kind>/config.py``) and is re-exported here.

Field descriptions name units; sources for defaults live beside the values in the YAML.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..devices.autoclave.config import (
    AutoclaveConfig,
    AutoclaveProgram,
    AutoclavePrograms,
    Drying,
    Exhaust,
    LeakTestProgram,
    Plateau,
    Prevacuum,
)
from ..devices.isolator.config import (
    AirflowConfig,
    GlovePortConfig,
    GloveTestConfig,
    HatchConfig,
    IsolatorConfig,
    LeakTestConfig,
    ParticleConfig,
    PressureConfig,
    RTPConfig,
)
from ..devices.process_equipment import ProcessEquipmentConfig
from ..devices.vhp.config import (
    VHPAerate,
    VHPCondition,
    VHPCycleRecipe,
    VHPCycles,
    VHPDecontaminate,
    VHPDehumidify,
    VHPLimits,
    VHPPrecheck,
    VHPUnitConfig,
)
from .base import Identifier, Model, PositiveFinite

__all__ = [
    "AirflowConfig", "AutoclaveConfig", "AutoclaveProgram", "AutoclavePrograms", "CellInfo", "CellLayout",
    "Drying", "Exhaust", "GlovePortConfig", "GloveTestConfig", "HatchConfig", "IsolatorConfig",
    "LeakTestConfig", "LeakTestProgram", "ParticleConfig", "Plateau", "PressureConfig", "Prevacuum",
    "RTPConfig", "RobotRef", "SimSettings", "VHPAerate", "VHPCondition", "VHPCycleRecipe", "VHPCycles",
    "VHPDecontaminate", "VHPDehumidify", "VHPLimits", "VHPPrecheck", "VHPUnitConfig",
]


# --------------------------------------------------------------------------- cell.yaml
class CellInfo(Model):
    id: Identifier
    name: str
    site: str = ""


class SimSettings(Model):
    step_s: PositiveFinite = Field(0.5, le=10.0, description="model integration step (sim s)")
    speedup: PositiveFinite = Field(600.0, description="sim seconds per wall second for `make run`")
    seed: int = 1


class RobotRef(Model):
    id: Identifier = Field(description="device id of the robot arm (its model is config/arm.yaml)")


class CellLayout(Model):
    """``config/cell.yaml``: the cell, its devices and their process parameters."""

    cell: CellInfo
    sim: SimSettings = SimSettings()
    robot: RobotRef
    isolator: IsolatorConfig
    vhp_unit: VHPUnitConfig
    autoclave: AutoclaveConfig
    process_equipment: ProcessEquipmentConfig = ProcessEquipmentConfig()  # issue 14 item 1

    @model_validator(mode="after")
    def _device_ids_unique(self) -> CellLayout:
        ids = self.device_ids()
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"device ids must be unique across the cell; repeated: {dup}")
        return self

    def device_ids(self) -> list[str]:
        pe = self.process_equipment.device_ids() if self.process_equipment.enabled else []
        return [self.isolator.id, self.vhp_unit.id, self.autoclave.id, self.robot.id, *pe]


# --------------------------------------------------------------------------- vhp_cycles.yaml
# --------------------------------------------------------------------------- autoclave_programs.yaml
