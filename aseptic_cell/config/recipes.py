"""Batch recipe schema (ISA-88 procedural model: procedure → unit procedures → operations → phases).

Phase types are a closed catalogue (:data:`PHASE_TYPES`): each names the parameters it takes.
References to devices, cycle recipes, programs, ports and poses are checked against the rest
of the configuration by :func:`aseptic_cell.config.loader.cross_check`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field, model_validator

from .base import Identifier, ItemStatus, Model

# phase type -> (required params, optional params)
PHASE_TYPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "glove_test": (frozenset(), frozenset({"ports"})),
    "isolator_leak_test": (frozenset(), frozenset()),
    "vhp_decontaminate": (frozenset({"cycle"}), frozenset()),
    "autoclave_transfer_in": (frozenset({"program", "load_id"}), frozenset()),
    "autoclave_test": (frozenset({"program"}), frozenset()),
    "rtp_transfer_in": (frozenset({"rtp", "beta_id"}), frozenset()),
    "robot_task": (frozenset({"waypoints"}), frozenset({"speed_class", "duration_s"})),
    "process_hold": (frozenset({"duration_s"}), frozenset({"description"})),
    "operator_confirm": (frozenset({"prompt"}), frozenset({"role"})),
    "process": (frozenset({"process"}), frozenset({"cryopreserved"})),  # a patient batch: processes/<id>.yaml
}


class Phase(Model):
    id: Identifier
    type: str
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known(self) -> Phase:
        if self.type not in PHASE_TYPES:
            raise ValueError(f"unknown phase type {self.type!r}; known: {sorted(PHASE_TYPES)}")
        required, optional = PHASE_TYPES[self.type]
        missing = sorted(required - set(self.params))
        if missing:
            raise ValueError(f"phase {self.id} ({self.type}) is missing params: {missing}")
        extra = sorted(set(self.params) - required - optional)
        if extra:
            raise ValueError(f"phase {self.id} ({self.type}) has unknown params: {extra}")
        return self


class Operation(Model):
    id: Identifier
    description: str = ""
    phases: list[Phase] = Field(min_length=1)


class UnitProcedure(Model):
    id: Identifier
    unit: Identifier = Field(description="device id of the unit (e.g. the isolator ISO1)")
    description: str = ""
    operations: list[Operation] = Field(min_length=1)


class Procedure(Model):
    id: Identifier
    unit_procedures: list[UnitProcedure] = Field(min_length=1)


class BatchRecipe(Model):
    """A master recipe (ISA-88)."""

    id: Identifier
    version: int = Field(ge=1)
    status: ItemStatus = "draft"  # change control: a GMP batch needs approved (config/change_control.py)
    description: str = ""
    product: str
    procedure: Procedure

    @model_validator(mode="after")
    def _unique_ids(self) -> BatchRecipe:
        seen: set[str] = set()
        for up in self.procedure.unit_procedures:
            for op in up.operations:
                for ph in op.phases:
                    key = f"{up.id}/{op.id}/{ph.id}"
                    if key in seen:
                        raise ValueError(f"phase path {key} is defined twice")
                    seen.add(key)
        return self

    def phases(self) -> Iterator[tuple[UnitProcedure, Operation, Phase]]:
        """Yield (unit_procedure, operation, phase) in execution order."""
        for up in self.procedure.unit_procedures:
            for op in up.operations:
                for ph in op.phases:
                    yield up, op, ph
