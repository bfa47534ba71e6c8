"""Arbiter and admission control: allocation (all-or-nothing) and the arbitration policy, rule by rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from aseptic_cell.scheduling.admission import AdmissionControl
from aseptic_cell.scheduling.arbiter import LINE_CLEARANCE, Arbiter, EventKind, RequestState
from aseptic_cell.scheduling.process import load_process
from aseptic_cell.scheduling.resources import OPEN_ZONE, ResourceSet, SchedulingConfig, load_scheduling

CONFIG = Path(__file__).resolve().parents[2] / "config"
MIN = 60.0
OPEN = ["WS", "ARM", OPEN_ZONE]


@pytest.fixture
def cfg() -> SchedulingConfig:
    return load_scheduling(CONFIG)


@pytest.fixture
def arb(cfg: SchedulingConfig) -> Arbiter:
    return Arbiter(ResourceSet(cfg.resources), cfg)


def granted(arb: Arbiter, now: float) -> list[str]:
    return [f"{g.request.batch}:{g.request.phase}" for g in arb.arbitrate(now).grants]


def test_all_or_nothing_and_the_reason_a_request_waits(arb: Arbiter) -> None:
    a = arb.request("A", "harvest", ["CFG"], 0)
    assert granted(arb, 0) == ["A:harvest"]
    b = arb.request("B", "vector_wash", ["CFG", "WLD", "ARM"], 1)
    c = arb.request("C", "feed", ["WLD", "ARM"], 2)
    assert granted(arb, 2) == ["C:feed"]                 # B took nothing while it waits
    assert b.state is RequestState.WAITING and arb.holders["ARM"] == [c.id]
    why = {w.resource: w for w in arb.why(b, 2)}
    assert why["CFG"].holders == ("A",) and why["CFG"].why == "held"
    assert arb.check_invariants() == []
    arb.release(a.id, 10)
    arb.release(c.id, 10)
    assert granted(arb, 10) == ["B:vector_wash"]
    assert arb.holders["CFG"] == arb.holders["WLD"] == arb.holders["ARM"] == [b.id]


def test_policy_order_safety_window_slack_fifo(arb: Arbiter) -> None:
    blocker = arb.request("X", "p", ["ARM"], 0)
    granted(arb, 0)
    arb.request("F1", "fifo", ["ARM"], 1)
    arb.request("F0", "fifo", ["ARM"], 2)
    arb.request("S", "slack", ["ARM"], 3, due=100 * 3600, remaining=90 * 3600)   # slack 10 h
    arb.request("W2", "window", ["ARM"], 4, latest_start=5 * 3600)
    arb.request("W1", "window", ["ARM"], 5, latest_start=3 * 3600)
    arb.request("G", "glove_test", ["ARM"], 6)                                     # safety by name
    order = [f"{r.batch}" for r in arb.order(7)]
    assert order == ["G", "W1", "W2", "S", "F1", "F0"]
    arb.release(blocker.id, 8)
    assert granted(arb, 8) == ["G:glove_test"]


def test_ageing_promotes_and_reserves_against_later_requests(arb: Arbiter) -> None:
    cfg_age = arb.t_age
    h = arb.request("H", "harvest", ["CFG"], 0)
    granted(arb, 0)
    old = arb.request("OLD", "vector_wash", ["CFG", "ARM"], 1)
    young = arb.request("Y", "feed", ["ARM"], 2)
    assert granted(arb, 2) == ["Y:feed"]                   # not aged: backfilling allowed
    arb.release(young.id, 3)
    arb.request("Y", "feed2", ["ARM"], 4)
    now = 1 + cfg_age
    assert arb.order(now)[0] is old                        # aged: deadline 1 + t_age
    assert granted(arb, now) == []                         # ARM reserved for the aged request
    assert any(w.resource == "CFG" for w in arb.why(old, now))
    arb.release(h.id, now + 1)
    assert granted(arb, now + 1) == ["OLD:vector_wash"]


def test_no_reservation_behind_a_fault(arb: Arbiter) -> None:
    arb.block("CFG", "imbalance")
    r = arb.request("A", "harvest", ["CFG", "ARM"], 0, latest_start=10)   # urgent (window)
    assert granted(arb, 0) == []
    assert [str(w) for w in arb.why(r, 0)] == ["CFG: faulted: imbalance"]
    arb.request("B", "feed", ["ARM"], 1)
    assert granted(arb, 1) == ["B:feed"]        # a batch-local fault stops others only through CFG


def test_invariant_check_catches_a_corrupt_allocation(arb: Arbiter) -> None:
    """check_invariants looks at the live allocations only, and still sees each kind of corruption:
    a released request left holding, a running one holding less than it needs, an unknown holder."""
    a = arb.request("A", "feed", ["ARM", "WS"], 0)
    assert granted(arb, 0) == ["A:feed"]
    arb.release(a.id, 5)
    assert arb.check_invariants() == []
    arb.holders["ARM"].append(a.id)  # a released request left in the holders
    assert arb.check_invariants() == [f"request {a.id} is done but holds ['ARM']"]
    arb.holders["ARM"].remove(a.id)
    b = arb.request("B", "feed", ["ARM", "WS"], 6)
    assert granted(arb, 6) == ["B:feed"]
    arb.holders["WS"].remove(b.id)  # running without all it needs
    assert arb.check_invariants() == [f"request {b.id} runs holding ['ARM'] of ['ARM', 'WS']"]
    arb.holders["WS"].append(b.id)
    arb.holders["CFG"].append(999)
    assert arb.check_invariants() == ["unknown request 999 holds ['CFG']"]


def test_blocks_of_two_sources_add_up(arb: Arbiter) -> None:
    """A cell-wide trip and a SEG-07 containment both block the arm: leaving CONTAIN must not free
    it while the trip's block holds (nor a signed restart after the trip while CONTAIN holds)."""
    arb.block("ARM", "cell-wide trip ISO1: fan", source="trip")
    arb.block("ARM", "SEG-07 spill", source="SEG-07")
    r = arb.request("A", "feed", ["ARM"], 0)
    arb.unblock("ARM", source="SEG-07")  # CONTAIN left
    assert granted(arb, 1) == [] and arb.faults["ARM"] == "cell-wide trip ISO1: fan"
    assert [str(w) for w in arb.why(r, 1)] == ["ARM: faulted: cell-wide trip ISO1: fan"]
    arb.block("ARM", "SEG-07 spill again", source="SEG-07")
    arb.unblock("ARM", source="trip")  # signed restart after the trip
    assert granted(arb, 2) == [] and arb.faults["ARM"] == "SEG-07 spill again"
    arb.unblock("ARM", source="other")  # a source that holds no block lifts nothing
    assert granted(arb, 3) == []
    arb.unblock("ARM", source="SEG-07")
    assert granted(arb, 4) == ["A:feed"] and "ARM" not in arb.faults


def test_window_look_ahead_warning_then_missed(arb: Arbiter) -> None:
    hold = arb.request("X", "p", ["ARM"], 0)
    granted(arb, 0)
    ls = 10 * 3600.0
    r = arb.request("A", "transduction", OPEN, 0, open=True, latest_start=ls)
    assert arb.next_change(0) == arb.t_age              # A ages first
    assert arb.next_change(arb.t_age + 1) == ls - arb.t_warn
    assert arb.arbitrate(ls - arb.t_warn - 1).events == []
    ev = arb.arbitrate(ls - arb.t_warn).events
    assert [e.kind for e in ev] == [EventKind.WINDOW_AT_RISK] and "ARM: held" in ev[0].detail
    assert arb.arbitrate(ls - 1).events == []              # once
    assert [e.kind for e in arb.arbitrate(ls + 1).events] == [EventKind.WINDOW_MISSED]
    arb.release(hold.id, ls + 2)
    assert granted(arb, ls + 2) == ["A:transduction"] and r.missed


def test_open_zone_line_clearance_and_purge_between_patients(arb: Arbiter) -> None:
    a = arb.request("A", "sample", OPEN, 0, open=True)
    granted(arb, 0)
    arb.release(a.id, 10 * MIN)
    assert arb.zone_owner == "A"                           # dirty after A until line clearance
    b = arb.request("B", "sample", OPEN, 11 * MIN, open=True)
    d = arb.arbitrate(11 * MIN)
    assert [e.kind for e in d.events] == [EventKind.LINE_CLEARANCE_REQUESTED]
    assert [(g.request.batch, g.request.phase) for g in d.grants] == [("A", LINE_CLEARANCE)]
    lc = d.grants[0].request
    assert any("line clearance after A" in w.why for w in arb.why(b, 11 * MIN))
    t = 21 * MIN
    arb.release(lc.id, t)
    purge_end = t + arb.t_purge
    assert arb.zone_owner is None and arb.zone_ready_at == purge_end
    assert granted(arb, purge_end - 1) == []
    assert any("purge wait" in w.why for w in arb.why(b, purge_end - 1))
    assert arb.next_change(b.requested_at + arb.t_age + 1) == purge_end
    assert granted(arb, purge_end) == ["B:sample"] and arb.zone_owner == "B"


def test_changeover_minimisation_bounded_by_max_consecutive_open(arb: Arbiter) -> None:
    n = arb.max_consecutive_open
    t = 0.0
    a = arb.request("A", "p0", OPEN, t, open=True)
    granted(arb, t)
    b = arb.request("B", "sample", OPEN, t + 1, open=True)   # B asked first for the next slot
    for i in range(1, n):
        t += 60
        arb.release(a.id, t)
        a = arb.request("A", f"p{i}", OPEN, t, open=True)
        assert granted(arb, t) == [f"A:p{i}"], i              # the owner keeps the zone
    t += 60
    arb.release(a.id, t)
    arb.request("A", f"p{n}", OPEN, t, open=True)
    d = arb.arbitrate(t)
    assert [g.request.phase for g in d.grants] == [LINE_CLEARANCE]   # bound reached: changeover for B
    arb.release(d.grants[0].request.id, t + 600)
    assert granted(arb, t + 600 + arb.t_purge) == ["B:sample"]
    assert b.state is RequestState.RUNNING


def test_vhp_is_cell_wide(arb: Arbiter) -> None:
    a = arb.request("A", "feed", ["WLD", "ARM"], 0)
    granted(arb, 0)
    v = arb.request("CELL", "vhp", ["VHP"], 1, safety=True)
    arb.request("B", "harvest", ["CFG"], 2)
    assert granted(arb, 2) == []                      # VHP waits for A and reserves the cell
    assert any("every running phase" in w.why for w in arb.why(v, 2))
    arb.release(a.id, 3)
    assert granted(arb, 3) == ["CELL:vhp"]
    assert granted(arb, 4) == []
    arb.release(v.id, 5)
    assert granted(arb, 5) == ["B:harvest"]


def test_deterministic(cfg: SchedulingConfig) -> None:
    def run() -> list[tuple[str, float]]:
        arb = Arbiter(ResourceSet(cfg.resources), cfg)
        out = []
        for i in range(6):
            arb.request(f"B{i % 3}", f"p{i}", ["ARM"] if i % 2 else OPEN, i, open=not i % 2, due=1e6 - i)
        t = 10.0
        for _ in range(20):
            for g in arb.arbitrate(t).grants:
                out.append((f"{g.request.batch}:{g.request.phase}", t))
            for q in arb.running():
                arb.release(q.id, t + 300)
            t += 1500
        return out
    assert run() == run() and len(run()) >= 6


def test_admission_slot_and_refusal_reasons(cfg: SchedulingConfig) -> None:
    cfg.resources.incubator.slots = 2
    rs = ResourceSet(cfg.resources)
    arb = Arbiter(rs, cfg)
    adm = AdmissionControl(arb)
    proc = load_process(CONFIG / "processes" / "cart-autologous.yaml", rs)
    r1 = adm.admit("P1", proc, 0)
    r2 = adm.admit("P2", proc, 0)
    assert r1.admitted and r2.admitted and {r1.slot, r2.slot} == {"INC-01", "INC-02"}
    r3 = adm.admit("P3", proc, 0)
    assert not r3.admitted and r3.reason.startswith("no free incubator slot (2 of 2 held")
    adm.finish("P1", 100)
    r4 = adm.admit("P3", proc, 101)
    assert not r4.admitted and "back from cleaning at t=86500" in r4.reason
    assert adm.admit("P3", proc, 100 + 86400).admitted


def test_admission_refuses_when_projected_open_zone_load_exceeds_the_day(cfg: SchedulingConfig) -> None:
    cfg.changeover.t_purge_min = 300   # 5 h purge: D0 has two open blocks, two batches cannot fit
    rs = ResourceSet(cfg.resources)
    arb = Arbiter(rs, cfg)
    adm = AdmissionControl(arb)
    proc = load_process(CONFIG / "processes" / "cart-autologous.yaml", rs)
    assert adm.admit("P1", proc, 0).admitted
    res = adm.admit("P2", proc, 0)
    assert not res.admitted and "projected GRADE_A_OPEN_ZONE load in period 0" in res.reason
    assert res.projected_peak_min_per_day[OPEN_ZONE] > 0.85 * 1440
    assert "P2" not in arb.slot_of


def test_no_starvation_of_a_two_resource_request_by_alternating_small_ones(arb: Arbiter) -> None:
    """Others keep ARM and CFG busy in turn so that both are never free together; without
    ageing and reservation the {ARM, CFG} request would wait forever. With them it starts
    within t_age plus one phase."""
    phase = 20 * MIN
    t = 0.0
    arb.request("X0", "p", ["ARM"], t)
    granted(arb, t)
    big = arb.request("BIG", "vector_wash", ["ARM", "CFG"], 0)
    held = {q.batch: q for q in arb.running()}
    turn = 1
    while big.state is RequestState.WAITING and t < 10 * 3600:
        # a fresh small request for the resource not held, then the oldest holder finishes
        res = "CFG" if turn % 2 else "ARM"
        arb.request(f"X{turn}", "p", [res], t + 1)
        granted(arb, t + 1)
        t += phase / 2
        for q in list(held.values()):
            if q.granted_at is not None and q.granted_at + phase <= t:
                arb.release(q.id, t)
        granted(arb, t)
        held = {q.batch: q for q in arb.running()}
        turn += 1
    assert big.state is RequestState.RUNNING
    assert big.granted_at is not None and big.granted_at <= arb.t_age + phase


def test_start_when_free_defers_a_window_chain_until_its_later_resource_is_idle(arb: Arbiter) -> None:
    freeze = arb.request("A", "freeze", ["CRF"], 0)
    granted(arb, 0)
    f = arb.request("B", "formulation", OPEN, 1, open=True, start_when_free=["CRF"])
    assert granted(arb, 1) == []
    assert [(w.resource, w.holders) for w in arb.why(f, 1)] == [("CRF", ("A",))]
    assert arb.holders["ARM"] == []                       # nothing held meanwhile
    arb.release(freeze.id, 90 * MIN)
    assert granted(arb, 90 * MIN) == ["B:formulation"]
    assert arb.holders["CRF"] == []                       # CRF was a start condition, not acquired
