"""Scheduling configuration and the master recipe for scheduling (config/scheduling.yaml, config/processes/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aseptic_cell.config.loader import ConfigError
from aseptic_cell.scheduling.process import load_process, load_processes
from aseptic_cell.scheduling.resources import OPEN_ZONE, ResourceKind, ResourceSet, load_scheduling

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def rs() -> ResourceSet:
    return ResourceSet(load_scheduling(CONFIG).resources)


def test_cell_resource_set_from_config(rs: ResourceSet) -> None:
    assert rs["ARM"].kind is ResourceKind.EXCLUSIVE and rs["ARM"].capacity == 1
    assert rs[OPEN_ZONE].capacity == 1
    assert rs["AC"].kind is ResourceKind.SHARED and rs["AC"].capacity == 2
    assert rs["VHP"].kind is ResourceKind.CELL_WIDE
    assert len(rs.slots) == 16 and rs["INC-16"].kind is ResourceKind.INCUBATOR_SLOT
    assert "INC-01" not in rs.requestable()


def test_both_processes_load_and_the_short_one_is_minutes(rs: ResourceSet) -> None:
    procs = load_processes(CONFIG, rs)
    full, short = procs["cart-autologous"], procs["cart-autologous-short"]
    assert [p.id for p in full.phases] == [p.id for p in short.phases]
    assert 9.5 * 86400 < full.nominal_duration() < 12 * 86400     # 9-11 d expansion + D0 work
    assert short.nominal_duration() < 2 * 3600
    ids = [p.id for p in full.phases]
    # the reference sequence: receipt ... activation, transduction, expansion, harvest ... freeze
    order = ["receipt", "sample_apheresis", "selection", "activation", "transduction", "feed_1",
             "harvest", "formulation", "fill", "out_to_freezer", "freeze"]
    assert [i for i in ids if i in order] == order
    assert full.phase("transduction").window is not None
    assert full.phase("transduction").window.earliest == 18 * 3600
    assert full.phase("out_to_freezer").window.latest == 3600        # t_cryo_max
    assert full.phase("sample_apheresis").window.latest == 48 * 3600  # t_fresh_max
    assert full.phase("thaw").optional and "thaw" not in [p.id for p in full.run_phases()]
    assert "thaw" in [p.id for p in full.run_phases(cryopreserved=True)]
    assert all(p.open == (OPEN_ZONE in p.resources) for p in full.phases)
    # formulation + fill form one open block
    blocks = [[p.id for p in b] for b in full.open_blocks()]
    assert ["formulation", "fill"] in blocks


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((CONFIG / "processes" / "cart-autologous.yaml").read_text())
    mutate(data)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def _phase(data: dict, pid: str) -> dict:  # type: ignore[type-arg]
    return next(p for p in data["phases"] if p["id"] == pid)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: _phase(d, "receipt")["resources"].append("TELEPORTER"), "unknown resource 'TELEPORTER'"),
    (lambda d: _phase(d, "transduction")["window"].update(latest="20h"),
     "inconsistent with the durations: the phases between them take 1d"),
    (lambda d: _phase(d, "transduction")["window"].update(earliest="31h"), "is after latest"),
    (lambda d: _phase(d, "transduction")["window"].update(after="freeze"), "is not an earlier phase"),
    (lambda d: _phase(d, "sample_d4").update(open=False), "open is False but GRADE_A_OPEN_ZONE is in resources"),
    (lambda d: _phase(d, "receipt").update(arm_required=False), "arm_required is False but ARM is in resources"),
    (lambda d: _phase(d, "feed_1").update(duration="45min"), "t_out_max"),
    (lambda d: _phase(d, "feed_2").update(duration="1 fortnight"), "a duration is a number of minutes"),
    (lambda d: _phase(d, "incubate_d3").update(resources=["ARM"]), "an incubation phase holds only its slot"),
    (lambda d: d["phases"].append(dict(d["phases"][0])), "phase id 'receipt' repeats"),
])
def test_precise_errors(tmp_path: Path, rs: ResourceSet, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as exc:
        load_process(_write(tmp_path, mutate), rs)
    text = str(exc.value)
    assert expected in text, text
    assert "processes/p.yaml" in text


def test_scheduling_config_errors(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIG / "scheduling.yaml").read_text())
    data["changeover"]["line_clearance_resources"] = ["ARM", "MOP"]
    data["resources"]["shared"].append({"id": "ARM", "capacity": 2})
    (tmp_path / "scheduling.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_scheduling(tmp_path)
    assert "repeated: ['ARM']" in str(exc.value)


def test_latest_start_inside_a_window_chain(rs: ResourceSet) -> None:
    proc = load_processes(CONFIG, rs)["cart-autologous"]
    phases = proc.run_phases()
    idx = {p.id: i for i, p in enumerate(phases)}
    ends = {"formulation": 1000.0}
    # fill (30 min) and seal/label (15 min) must leave out_to_freezer its t_cryo_max of 60 min
    assert proc.latest_start(phases, idx["fill"], ends) == 1000 + 3600 - 45 * 60
    assert proc.latest_start(phases, idx["seal_label"], ends) == 1000 + 3600 - 15 * 60
    assert proc.latest_start(phases, idx["out_to_freezer"], ends) == 1000 + 3600
    assert proc.latest_start(phases, idx["harvest"], {}) is None
    assert proc.phase("formulation").start_when_free == ["CRF"]
