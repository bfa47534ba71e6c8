"""Every refusal code the device layer can produce is a member of the one catalogue.

The sim models (``sim/``, the devices' own controllers) raise ``CommandRefused(code, ...)``
and the devices' hard interlocks (``aseptic_cell/devices/<kind>/contract.py``) return
``(code, reason)``. Both are scanned here with :mod:`ast`, so a new uncatalogued string
fails this test before any command ever reaches it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from aseptic_cell.sim.common import CommandRefused

from aseptic_cell.devices.codes import RefusalCode

ROOT = Path(__file__).resolve().parents[2]
SIM_SOURCES = sorted((ROOT / "sim").rglob("*.py"))
HARD_INTERLOCKS = sorted((ROOT / "aseptic_cell" / "devices").glob("*/contract.py"))


def _code_of(node: ast.expr) -> str | None:
    """The code an expression names statically: ``"X"`` or ``RefusalCode.X``; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr if node.value.id == "RefusalCode" else None
    return None


def _is_refusal_annotation(ann: ast.expr | None) -> bool:
    return ann is not None and ("RefusalCode" in ast.unparse(ann) or "Refusal" in ast.unparse(ann))


def raised_codes(tree: ast.AST) -> tuple[list[str], list[str]]:
    """(codes, dynamic): the first arguments of ``CommandRefused(...)`` calls and the first
    elements of the tuples returned by functions annotated to return a refusal. ``dynamic``
    lists the calls whose code is not a literal (``CommandRefused(*refusal)``)."""
    codes: list[str] = []
    dynamic: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name != "CommandRefused":
                continue
            kw = [k.value for k in node.keywords if k.arg == "code"]
            arg = node.args[0] if node.args else (kw[0] if kw else None)
            code = None if arg is None or isinstance(arg, ast.Starred) else _code_of(arg)
            if code is None:
                dynamic.append(ast.unparse(node))
            else:
                codes.append(code)
        elif isinstance(node, ast.FunctionDef) and _is_refusal_annotation(node.returns):
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple) and ret.value.elts:
                    code = _code_of(ret.value.elts[0])
                    if code is None:
                        dynamic.append(ast.unparse(ret))
                    else:
                        codes.append(code)
    return codes, dynamic


def _uncatalogued(codes: list[str]) -> list[str]:
    return sorted({c for c in codes if c not in RefusalCode.__members__ or RefusalCode[c].value != c})


def test_every_code_raised_by_the_sim_models_is_catalogued():
    found: dict[str, list[str]] = {}
    for path in SIM_SOURCES:
        codes, dynamic = raised_codes(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found[path.name] = codes
        bad = _uncatalogued(codes)
        assert not bad, f"{path.relative_to(ROOT)} raises codes missing from RefusalCode: {bad}"
        # a code passed through a variable is only allowed as *refusal from a scanned
        # refusal-returning helper (the autoclave's door_open_refusal)
        assert all(d.startswith("CommandRefused(*") for d in dynamic), dynamic
    all_codes = {c for codes in found.values() for c in codes}
    assert len(all_codes) >= 30, sorted(all_codes)  # the scan still sees the models' refusals
    for kind in ("HATCH_OTHER_DOOR_OPEN", "AC_PRESSURISED", "VHP_CYCLE_ACTIVE", "DRIVES_OFF", "GLOVE_FAILED"):
        assert kind in all_codes


def test_every_code_returned_by_the_hard_interlocks_is_catalogued():
    assert len(HARD_INTERLOCKS) == 10, HARD_INTERLOCKS  # one contract per device kind (4 + 6 process equipment)
    codes, dynamic = [], []
    for path in HARD_INTERLOCKS:
        c, d = raised_codes(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        codes += c
        dynamic += d
    assert not dynamic, dynamic
    assert len(codes) >= 15, codes
    assert not _uncatalogued(codes), _uncatalogued(codes)


def test_same_condition_same_code_in_sim_and_hard_interlocks():
    """The IL-01/05/10/11 and robot conditions carry one name in both layers."""
    sim_codes = {c for p in SIM_SOURCES for c in raised_codes(ast.parse(p.read_text(encoding="utf-8")))[0]}
    hil_codes = {c for p in HARD_INTERLOCKS for c in raised_codes(ast.parse(p.read_text(encoding="utf-8")))[0]}
    assert hil_codes <= sim_codes, sorted(hil_codes - sim_codes)
    for old in ("HATCH_OTHER_DOOR_NOT_CLOSED", "HATCH_OTHER_SEAL_NOT_INFLATED", "HATCH_DWELL_NOT_ELAPSED",
                "HATCH_DP_OUT_OF_BAND", "DRIVES_DISABLED", "PROTECTIVE_STOP_ACTIVE", "AC_CHAMBER_HOT",
                "AC_CHAMBER_PRESSURE", "GLOVE_TEST_FAILED"):
        assert old not in RefusalCode.__members__
        assert old not in sim_codes


def test_the_scan_catches_an_uncatalogued_string():
    src = (
        "def f():\n"
        "    raise CommandRefused('HATCH_OTHER_DOOR_OPEN', 'ok')\n"
        "def g():\n"
        "    raise sim.common.CommandRefused(code='NOT_IN_THE_CATALOGUE', reason='x')\n"
        "def h(side) -> tuple[RefusalCode, str] | None:\n"
        "    return (RefusalCode.NO_SUCH_MEMBER, 'x')\n"
        "def i(name) -> Refusal:\n"
        "    return ('ALSO_UNKNOWN', 'x')\n"
    )
    codes, dynamic = raised_codes(ast.parse(src))
    expected = ["ALSO_UNKNOWN", "HATCH_OTHER_DOOR_OPEN", "NOT_IN_THE_CATALOGUE", "NO_SUCH_MEMBER"]
    assert sorted(codes) == expected
    assert not dynamic
    assert _uncatalogued(codes) == ["ALSO_UNKNOWN", "NOT_IN_THE_CATALOGUE", "NO_SUCH_MEMBER"]


def test_command_refused_takes_a_catalogue_code():
    e = CommandRefused("AC_HOT", "chamber hot")
    assert e.code is RefusalCode.AC_HOT and e.code == "AC_HOT"
    assert str(e) == "AC_HOT: chamber hot"
    assert CommandRefused(RefusalCode.DRIVES_OFF, "x").code is RefusalCode.DRIVES_OFF
    with pytest.raises(ValueError):
        CommandRefused("NOT_A_CATALOGUED_CODE", "x")
