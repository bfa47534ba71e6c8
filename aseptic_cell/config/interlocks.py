"""Interlock catalogue schema (``config/interlocks.yaml``).

A rule guards one or more actions; its ``when`` condition must hold before the action is
allowed. Conditions are a small, closed grammar (no ``eval``):

- ``{all: [cond, ...]}``, ``{any: [cond, ...]}``, ``{not: cond}``
- ``{signal: "<dotted.name>", op: eq|ne|lt|le|gt|ge|in, value: <literal>}``
- ``{signal: ..., op: ..., param: <name of an entry in parameters>}``

Signal names may contain ``{placeholder}`` fields filled from the guarded action's
arguments (``{door}``, ``{other}``, ``{port}``, ``{rtp}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from .base import Finite, Model

ALLOWED_PLACEHOLDERS = {"door", "other", "port", "rtp"}
_SIGNAL = re.compile(r"^[a-z][a-z0-9_]*(\.([A-Za-z0-9_]+|\{[a-z]+\}|[A-Za-z0-9_]*\{[a-z]+\}))+$")
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")


class Comparison(Model):
    signal: str
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in"]
    value: bool | Finite | str | list[bool | Finite | str] | None = None
    param: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Comparison:
        if not _SIGNAL.match(self.signal):
            raise ValueError(f"signal {self.signal!r} is not a dotted name (lower-case words, ids, {{placeholders}})")
        for ph in re.findall(r"\{([a-z]+)\}", self.signal):
            if ph not in ALLOWED_PLACEHOLDERS:
                raise ValueError(
                    f"signal {self.signal!r} uses unknown placeholder {{{ph}}}; "
                    f"allowed: {sorted(ALLOWED_PLACEHOLDERS)}"
                )
        if (self.value is None) == (self.param is None):
            raise ValueError("give exactly one of 'value' or 'param'")
        if self.op == "in" and self.value is not None and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list value")
        if self.op in ("lt", "le", "gt", "ge") and self.value is not None and (
            isinstance(self.value, (bool, str, list))
        ):
            raise ValueError(f"op {self.op!r} needs a number")
        return self


class AllOf(Model):
    all: list[Condition] = Field(min_length=1)


class AnyOf(Model):
    any: list[Condition] = Field(min_length=1)


class NotOf(Model):
    not_: Condition = Field(alias="not")

    model_config = Model.model_config | {"populate_by_name": True}


def _condition_kind(v: Any) -> str:
    """Pick the branch from the keys, so an error names only the relevant branch."""
    if isinstance(v, dict):
        for key in ("all", "any", "not"):
            if key in v:
                return key.capitalize()
        return "Cmp"
    kinds: dict[type, str] = {AllOf: "All", AnyOf: "Any", NotOf: "Not"}
    return kinds.get(type(v), "Cmp")


Condition = Annotated[
    Annotated[AllOf, Tag("All")] | Annotated[AnyOf, Tag("Any")] | Annotated[NotOf, Tag("Not")]
    | Annotated[Comparison, Tag("Cmp")],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def iter_comparisons(cond: Condition) -> Iterator[Comparison]:
    """Yield every leaf comparison of a condition tree."""
    if isinstance(cond, Comparison):
        yield cond
    elif isinstance(cond, AllOf):
        for c in cond.all:
            yield from iter_comparisons(c)
    elif isinstance(cond, AnyOf):
        for c in cond.any:
            yield from iter_comparisons(c)
    elif isinstance(cond, NotOf):
        yield from iter_comparisons(cond.not_)


class InterlockRule(Model):
    id: str = Field(pattern=r"^(IL|RB)-\d{2}[A-Z]?$", description="IL-nn (cell rule) or RB-nn (robot rule)")
    title: str = Field(min_length=3)
    guards: list[str] = Field(min_length=1, description="actions this rule guards")
    when: Condition
    basis: str = Field(min_length=3, description="Annex 1 paragraph / standard / source key")
    severity: Literal["critical", "high", "medium", "low"]
    scope: Literal["action", "each_glove_port"] = "action"
    on_tick: Literal["hold_batch", "abort_vhp", "protective_stop"] | None = None
    bypassable: bool = Field(
        default=False, description="may be bypassed under bypass management (IEC 61511-1 [IEC61511-1] [M]: "
        "requested, approved by a second person, time-limited, alarmed); never a critical rule")

    @model_validator(mode="after")
    def _actions(self) -> InterlockRule:
        for a in self.guards:
            if not _ACTION.match(a):
                raise ValueError(f"guarded action {a!r} must look like 'device.verb'")
        if self.bypassable and self.severity == "critical":
            raise ValueError(f"rule {self.id}: a critical rule can never be bypassable")
        return self


class EnforcedRule(Model):
    """A segregation (SEG-nn) or chain-of-identity (COI-nn) row of the catalogue: a rule the cell
    enforces in code rather than as a condition over device signals (no ``when``); the row says
    where it is enforced, its scope, what holds, and the scenario that demonstrates it."""

    id: str = Field(pattern=r"^(SEG|COI)-\d{2}$", description="SEG-nn / COI-nn as the multi-patient spec numbers them")
    title: str = Field(min_length=3)
    basis: str = Field(min_length=3, description="source key(s) (docs/REFERENCES.md) and [M]/[V] tags")
    scope: Literal["cell-wide", "batch-local"]
    holds: str = Field(min_length=3, description="what the cell does when the rule is broken")
    enforced_by: list[str] = Field(min_length=1, description="module(.function) paths that enforce it")
    scenario: str = Field(pattern=r"^(SEG|COI)-[A-Za-z0-9_.\-]+$", description="config/scenarios/<id>.yaml")
    severity: Literal["critical", "high", "medium", "low"]


class SegregationParameters(Model):
    """Site values [M] of the segregation rules built in aseptic_cell/supervisor/segregation.py."""

    glove_test_max_age_h: Finite = Field(default=24.0, gt=0, description="T_glove_max (SEG-08 c) [M]")
    glove_test_before_first_open: bool = Field(
        default=False, description="SEG-08 (c): hold a batch whose first open phase finds a glove test older "
        "than glove_test_max_age_h (or none) [M]")
    spill_vhp_when_not_confined: bool = Field(default=True, description="SEG-07.4: escalate to a full VHP [M]")
    product_contact: dict[str, Literal["line_clearance", "manual"]] = Field(
        default_factory=dict, description="SEG-10: modules that can contact product -> how they are cleaned [M]")


class InterlockCatalogue(Model):
    parameters: dict[str, Finite] = {}
    rules: list[InterlockRule] = Field(min_length=1)
    segregation_parameters: SegregationParameters = SegregationParameters()
    enforced: list[EnforcedRule] = Field(default_factory=list, description="SEG-nn / COI-nn rows")

    @model_validator(mode="after")
    def _consistent(self) -> InterlockCatalogue:
        ids = [r.id for r in self.rules] + [r.id for r in self.enforced]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"rule ids must be unique; repeated: {dup}")
        for rule in self.rules:
            for cmp_ in iter_comparisons(rule.when):
                if cmp_.param is not None and cmp_.param not in self.parameters:
                    raise ValueError(
                        f"rule {rule.id}: param {cmp_.param!r} is not defined in parameters "
                        f"(known: {sorted(self.parameters)})"
                    )
        return self
