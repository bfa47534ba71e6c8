"""The command catalogue of every device kind: the one contract between the device nodes and
their backends (sim or OPC UA), assembled from the devices' own contracts
(``aseptic_cell/devices/<kind>/contract.py``). Commands are idempotent and named for their
effect (``close_door``, not ``toggle_door``); every argument is typed and validated, so a bad
argument is rejected with a precise reason before anything is sent to a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .arm import contract as arm
from .autoclave import contract as autoclave
from .catalogue import Arg, CommandSpec, InvalidArguments, validate_spec
from .centrifuge import contract as centrifuge
from .counter import contract as counter
from .incubator import contract as incubator
from .isolator import contract as isolator
from .scanner import contract as scanner
from .sealer import contract as sealer
from .vhp import contract as vhp
from .welder import contract as welder

KINDS = ("isolator", "vhp", "autoclave", "arm", "incubator", "welder", "sealer", "centrifuge", "counter", "scanner")
CONTRACTS = {"isolator": isolator, "vhp": vhp, "autoclave": autoclave, "arm": arm,
             # process equipment (issue 14 item 1)
             "incubator": incubator, "welder": welder, "sealer": sealer, "centrifuge": centrifuge,
             "counter": counter, "scanner": scanner}
CATALOGUE: dict[str, dict[str, CommandSpec]] = {k: {c.name: c for c in m.COMMANDS} for k, m in CONTRACTS.items()}

__all__ = ["CATALOGUE", "CONTRACTS", "KINDS", "Arg", "CommandSpec", "InvalidArguments", "spec", "validate"]


def spec(kind: str, name: str) -> CommandSpec:
    if kind not in CATALOGUE:
        raise InvalidArguments(f"unknown device kind {kind!r}; known: {list(KINDS)}")
    try:
        return CATALOGUE[kind][name]
    except KeyError:
        raise InvalidArguments(
            f"unknown {kind} command {name!r}; known: {sorted(CATALOGUE[kind])}"
        ) from None


def validate(kind: str, name: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``args`` against the command's spec and return them typed.

    Raises:
        InvalidArguments: unknown command, unknown/missing argument, wrong type, NaN/inf,
            value not among the allowed choices.
    """
    return validate_spec(kind, spec(kind, name), args)
