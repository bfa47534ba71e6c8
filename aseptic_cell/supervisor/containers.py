"""The sterility of a transfer container, from the container's own data.

An RTP beta (a container or bag docked to the isolator) brings its contents into grade A, so
its sterility is checked before docking (RTP practice [MC-RTP] [M]). The status is never
assumed: it comes from the container's entry in ``config/containers.yaml`` (the site's register
of sterile containers, fed from goods receipt):

* ``evidence: supplier_certificate`` — sterilised by the supplier (gamma or e-beam irradiation,
  ethylene oxide); the certificate's reference is recorded with the docking;
* ``evidence: cycle_record`` — sterilised on site in the cell's autoclave: the reference is the
  autoclave load id, and this batch must hold a PASS cycle record of that load.

A container without an entry, or whose evidence is not there, has an *unknown* status and the
transfer is refused (the batch holds with the reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config.base import Identifier, Model

FILE = "containers.yaml"


class Container(Model):
    id: Identifier = Field(description="container (beta) id as the recipe and the RTP know it")
    description: str = ""
    method: Literal["irradiation", "ethylene_oxide", "moist_heat"] = Field(description="how it was sterilised")
    evidence: Literal["supplier_certificate", "cycle_record"]
    reference: str = Field(min_length=3, description="certificate number, or the autoclave load id")


class ContainersFile(Model):
    containers: list[Container] = Field(default_factory=list)


def load_register(root: str | Path) -> dict[str, Container] | str:
    """The register in ``root``, or the reason it cannot be read (then every status is unknown)."""
    from ..config.loader import ConfigIssue, _parse

    issues: list[ConfigIssue] = []
    parsed = _parse(Path(root) / FILE, ContainersFile, FILE, issues)
    if parsed is None:
        return "; ".join(str(i) for i in issues) or f"{FILE} cannot be read"
    return {c.id: c for c in parsed.containers}


_CACHE: dict[str, dict[str, Container] | str] = {}


def sterility(ctx: Any, container_id: str) -> tuple[str | None, str]:
    """``("sterile", evidence text)`` or ``(None, why the status is unknown)``."""
    root = str(getattr(ctx.cfg, "root", ""))
    reg = _CACHE.get(root)
    if reg is None:
        reg = _CACHE[root] = load_register(root)
    if isinstance(reg, str):
        return None, f"container register unavailable: {reg}"
    c = reg.get(container_id)
    if c is None:
        return None, f"container {container_id} is not in {FILE}: its sterility is unknown"
    if c.evidence == "supplier_certificate":
        return "sterile", f"{c.method}, supplier certificate {c.reference}"
    results = getattr(ctx, "results", {}) or {}
    rec = results.get("autoclave")
    if isinstance(rec, dict) and rec.get("result") == "PASS" and rec.get("load_id") == c.reference:
        return "sterile", f"{c.method}, autoclave cycle PASS of load {c.reference}"
    return None, (f"container {container_id}: no PASS autoclave cycle record of load {c.reference} in this batch: "
                  "its sterility is unknown")
