"""Stateful property test of issue 14: >= 4 concurrent patient batches on the in-process cell
(with its process equipment), random operator commands, signed batch commands per batch, device
faults (process equipment too), scanner misreads, another patient's container presented at a
scan point and cell-wide trips (excursions); after every step and every supervisor tick the
segregation and chain-of-identity invariants (aseptic_cell.supervisor.invariants.SegregationMonitor)
and the Annex 1 invariants (InvariantMonitor) must hold.

Every sequence starts from a copy of a snapshot of a whole 4-patient campaign
(aseptic_cell.supervisor.fuzz_patients.CampaignSnapshots: every mix of open, closed, incubating,
waiting, held and ended batches, line clearance, purge wait, trips). Hypothesis draws each
sequence as data (a start and 6 steps, aseptic_cell.supervisor.fuzz_sequences): derandomized, so
reproducible, and a failure is shrunk and printed as ``start=..., steps=[...]`` (replay it with
``run_sequence``). The coverage reached is printed and asserted.

Sequences: ``PATIENTS_STATEFUL_SEQUENCES`` (default ``DEFAULT_SEQUENCES``, the issue's 10,000).
Cost (README, Tests): the campaign's snapshots ~9 s CPU once, then ~28 ms CPU a sequence on a quiet
machine (a thaw of the snapshot's pickle and its garbage collected after the sequence ~4 ms; ~7
supervisor ticks of 30 s with 4 batches, the interlock engine incremental between full
evaluations every 4th tick, the device models by the twin's rest rule; the monitors).
``PATIENTS_STATEFUL_SEQUENCES=600`` is a quicker local run."""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.supervisor.fuzz import FastSignUsers
from aseptic_cell.supervisor.fuzz_patients import PATIENTS, CampaignSnapshots, PatientCoverage, PatientFuzzCell
from aseptic_cell.supervisor.fuzz_sequences import STEP_KINDS, Collector, Niced, apply_step, random_steps, run_sequence

pytestmark = pytest.mark.timeout(1800)

_cfg = load_config(default_config_dir())
# site values [M]: a 1 min line clearance and a 2 min purge wait (default 10 + 20 min): the
# changeovers of the campaign happen in minutes, so its snapshots are dense in every mix
_ch = _cfg.scheduling.changeover.model_copy(update={"t_purge_min": 2, "t_line_clearance_min": 1})
CFG = dataclasses.replace(_cfg, scheduling=_cfg.scheduling.model_copy(update={"changeover": _ch}))
USERS = FastSignUsers(CFG.users, type("Clock", (), {"now": lambda self: 0.0})())
DEFAULT_SEQUENCES = 10_000
SEQUENCES = int(os.environ.get("PATIENTS_STATEFUL_SEQUENCES", str(DEFAULT_SEQUENCES)))
STEPS = 6
MIN_MIXES = 15
"""Distinct mixes (open/closed/incubating/waiting/held/ended counts of the 4 batches) checked."""
STEP = st.tuples(st.sampled_from(STEP_KINDS), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1))


def snapshots() -> CampaignSnapshots:
    return CampaignSnapshots.of(CFG, USERS)


def test_four_patient_sequences_keep_every_invariant():
    """``SEQUENCES`` hypothesis-drawn sequences of 6 steps from the campaign's snapshots: no
    segregation, COI or Annex 1 invariant is violated, and the sequences reached every kind of
    mix, fault, misread, mismatch and excursion (coverage printed with ``-s``)."""
    snaps = snapshots()
    cov = PatientCoverage()
    count = {"sequences": 0}
    collector, niced = Collector(), Niced()  # the system tests beside it get the CPU first

    @settings(max_examples=SEQUENCES, derandomize=True, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(start=st.integers(0, 2**16), steps=st.lists(STEP, min_size=STEPS, max_size=STEPS))
    def sequence(start, steps):
        count["sequences"] += 1
        out = run_sequence(snaps, (start * 2654435761) % 2**32, steps, cov)
        collector.done()
        assert not out.violations, out.describe()

    try:
        sequence()
    finally:
        collector.close()
        niced.close()
    print(f"\npatients stateful: {count['sequences']} sequences of {STEPS} steps from {len(snaps)} snapshots "
          f"of a {PATIENTS}-patient campaign ({snaps.sim_s:.0f} sim s)\n{cov.table()}")
    assert count["sequences"] >= SEQUENCES, f"only {count['sequences']} of {SEQUENCES} sequences ran"
    assert len(cov.mixes) >= MIN_MIXES, sorted(cov.mixes)
    ev = cov.events
    for what in ("misread injected", "mismatched container presented", "mismatched label read",
                 "COI-30 stop (deviation, holds, quarantine)", "cell-wide trip (excursion)",
                 "excursion window closed", "SEG-06 IMPACTED deviation", "weld/connect checked",
                 "scanned step checked", "line clearance running", "purge wait",
                 "one open, others closed/incubating", "batch restart accepted", "batch hold accepted",
                 "interlock evaluations, incremental", "interlock evaluations, full"):
        assert ev[what] > 0, f"never reached: {what}"
    process_faults = {k for k in ev if k.split(" ")[-1].split(":")[0] in ("INC1", "WLD1", "SEAL1", "CFG1")}
    assert len(process_faults) >= 4, process_faults  # the process equipment's faults fired too
    mixes = " ".join(cov.mixes)
    for what in ("open=1", "incubating=", "waiting=", "held=", "ended="):
        assert what in mixes, what


def test_fast_copies_behave_like_the_reference_copies():
    """The two shortcuts of the sequences change nothing a sequence can observe: a thaw of a
    snapshot's pickle (vs ``copy.deepcopy`` of the live cell) and the twin's rest rule between
    ticks (vs the models' own substeps all the way) give, for seeded sequences from snapshots
    across the campaign, the same batch states, active phases, record entries (kinds, actions,
    payloads, floats to 9 significant digits) and monitor findings; and a thawed copy is independent
    of its snapshot."""
    import json
    import random

    snaps = snapshots()
    live = PatientFuzzCell.thaw(snaps.snaps[len(snaps) // 2])
    head0 = [ex.record.head() for ex in live.sup.patients.values()]
    a, b = live.clone(), PatientFuzzCell.thaw(snaps.snaps[len(snaps) // 2])
    for f in (a, b):
        f.run.tick_s = snaps.tick_s
        f.advance(300.0)
    assert [ex.record.head() for ex in live.sup.patients.values()] == head0  # the copies did not touch it

    def rounded(v):  # the rest rule is exact up to float rounding (readings agree to ~1e-14); the
        # entries' hashes (linked from deviations) cover the random event ids and those digits
        if isinstance(v, float):
            return float(f"{v:.9g}")
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items() if k not in ("event_id", "hash")}
        if isinstance(v, (list, tuple)):
            return [rounded(x) for x in v]
        return v

    def entries(ex):  # every field but the random (uuid4) event ids of custody events
        return [(e.seq, e.ts, e.kind, e.actor, e.action, e.reason,
                 json.dumps(rounded(e.payload), sort_keys=True, default=str))
                for e in ex.record.entries()]

    def seen(f):
        return (f.run.now(), f.mix(), sorted((ex.batch_id, ex.sm.state.value, ex.active_phase, entries(ex))
                                             for ex in f.sup.patients.values()), f.violations)

    assert seen(a) == seen(b)
    coarse_s = 0.0
    for n in range(8):
        steps = random_steps(random.Random(n), STEPS)
        k = n * len(snaps) // 8
        outs = []
        for coarse in (False, True):
            f = snaps.start(k, coarse=coarse)
            for step in steps:
                apply_step(f, step)
            outs.append(seen(f))
            coarse_s += f.rest_s
        assert outs[0] == outs[1], (k, steps)
    assert coarse_s > 0  # the rest rule was taken (else this compares fine with fine)


def test_segregation_monitor_catches_violations():
    """Each segregation / chain-of-identity invariant can fail: two real patient batches, then the
    state is tampered with, one rule at a time, and the monitor must name the breach."""
    from aseptic_cell.batch.states import PhaseState
    from aseptic_cell.coi import encode_label
    from aseptic_cell.supervisor.fuzz_patients import PatientFuzzCell
    from aseptic_cell.supervisor.patients import Excursion

    f = PatientFuzzCell(CFG, USERS, tick_s=30.0)
    f.start(0), f.start(1)
    sup, pc, seg = f.sup, f.sup.patient_cell, f.seg
    assert f.run.run_until(lambda: pc.coi.genealogy.get("APH-P-2") is not None, 900)  # both received
    f.advance(30.0)
    assert f.violations == [], f.violations
    a, b = sup.patients["P-1"], sup.patients["P-2"]
    assert a.sm.state is PhaseState.RUNNING and b.sm.state is PhaseState.RUNNING

    def found(*texts):
        got = " | ".join(seg.check())
        for t in texts:
            assert t in got, (t, got)

    # SEG-01: two COIs open in grade A, one of them without owning the open zone
    saved = dict(pc.open_now)
    pc.open_now.update({"P-1": sup.now(), "P-2": sup.now()})
    found("SEG-01: 2 COIs open in grade A at once", "without owning the open zone")
    pc.open_now.clear()
    pc.open_now.update(saved)
    # every entry carries its COI (written past the COI-stamping wrapper)
    a.record._record.append("command", batch_id="P-1", actor="system", action="x", payload={})
    found("does not carry its COI")

    def custody(ex, event, cids, ver="PROCEED", scan_coi=None):
        label = encode_label(scan_coi or ex.coi, cids[0])
        ex.record.append("custody", batch_id=ex.batch_id, actor="system", action=f"custody.{event.lower()}",
                         payload={"event": event, "coi_id": ex.coi, "container_ids": cids,
                                  "verification_result": {"action": ver, "code": "X"},
                                  "scan_payloads": [{"payload": label, "read_failed": False}]})

    # SEG-03: a weld of A's product to B's
    custody(a, "WELD", [f.product(a), f.product(b)])
    found("SEG-03: WELD")
    # COI-01: an open step without a PROCEED verification; one after a scan of another COI's label
    custody(a, "OPEN_START", [f.product(a)], ver="STOP")
    found("COI-01: OPEN_START", "without a matching scan")
    custody(a, "SAMPLE", [f.product(a)], scan_coi=b.coi)
    found("after a scan that read " + b.coi)
    # COI-30: a mismatch that names both batches but B runs on and the container is not quarantined
    a.record.append("deviation", batch_id="P-1", actor="system", action="deviation.raise",
                    payload={"deviation": "DEV-X", "hold_batches": ["P-1", "P-2"], "quarantine": [f.product(b)],
                             "coi_expected": a.coi})
    found("COI-30: DEV-X names batch P-2 to hold; it is Running", f"quarantines {f.product(b)}")
    # a mismatched label read at a scan point without a deviation; the batch still running
    key = (f.product(b), "WS")
    pc.reader.presented[key] = encode_label(a.coi, f.product(a))
    seg.expect_mismatch(f.product(b), "P-2", {key})
    del pc.reader.presented[key]
    found("another patient's label read for " + f.product(b) + " of batch P-2: no deviation", "still running")
    # SEG-06: an excursion window closed with a batch recorded open in it but not IMPACTED
    pc.excursions.append(Excursion("IL-X", sup.now() - 60.0, open_batches={"P-2"}))
    seg.check()
    pc.excursions[-1].end = sup.now()
    found("SEG-06: IMPACTED recorded for []", "P-2 open during the excursion, not flagged IMPACTED")
    # Annex 1 §9: a batch still open in grade A above the particle action limit after the grace
    iso = dict(f.cell.sensors("isolator"), **{"particles.action_excursion": True})
    real_sensors, t0 = f.cell.sensors, sup.now()
    f.cell.sensors = lambda node: iso if node == "isolator" else real_sensors(node)
    pc.open_now["P-2"] = t0
    assert not [v for v in seg.check() if "particle action limit" in v]  # within the grace
    sup.now = lambda: t0 + 60.0
    found("['P-2'] open in grade A above the particle action limit for 60 s without a hold")
    del sup.now
    f.cell.sensors = real_sensors
    pc.open_now.pop("P-2")
    # no auto-resume; no continue after a COI-30 stop
    b.sm.hold("op1"), b.sm.done("system")
    assert b.sm.state is PhaseState.HELD
    b.sm.restart("system")
    assert any("auto-resume: batch P-2 left Held by 'system'" in v for v in seg.violations)
    a.coi_stop = "COI-10 mismatch"
    a.sm.hold("op1"), a.sm.done("system"), a.sm.restart("sup1")
    assert any("COI-30: batch P-1 continued after a COI stop" in v for v in seg.violations)


def test_no_patient_container_opened_during_a_particle_action_excursion():
    """Found by the sequences (start=0, four RunBatch, ``ISO1:particle_source``, 180 s): a batch's
    open step must not start while the grade A action excursion stands (Annex 1 §9, IL-12); it
    waits, so no batch is open above the action limit and nothing is violated."""
    f = PatientFuzzCell(CFG, USERS, tick_s=30.0)
    f.start(0)
    f.cell.inject_fault("ISO1", "particle_source")
    pc, ex = f.sup.patient_cell, f.sup.patients["P-1"]
    waited = 0
    for _ in range(12):
        f.advance(30.0)
        if f.cell.sensors("isolator").get("particles.action_excursion") and ex.tree is not None \
                and "waiting to open" in " ".join(str(b.feedback_message) for b in ex.tree.iterate()):
            waited += 1
        assert "P-1" not in pc.open_now, f.run.now()
    assert waited > 0  # the open step was reached and refused
    assert f.violations == [], f.violations


def test_mismatch_naming_a_batch_reset_after_its_end():
    """Found by a 10,000-sequence run: P-1 ended and reset to Idle, then P-4's container presented
    with P-1's label; the deviation names both, P-4 holds and P-1 runs nothing (Idle is not a
    breach of COI-30: the segregation monitor accepts it; Running would not be)."""
    steps = [("run_batch", 0, 0)] * 4 + [("batch_command", 7, 0), ("mismatched_container", 0, 0)]
    cov = PatientCoverage()
    out = run_sequence(snapshots(), 156074201, steps, cov)
    assert out.violations == [], out.describe()
    assert cov.events["COI-30 stop (deviation, holds, quarantine)"] > 0


def test_an_incremental_interlock_verdict_the_full_evaluation_contradicts_is_a_violation():
    """The sequences run the interlock engine incrementally with a full evaluation every 4th tick
    (``CampaignSnapshots.full_evaluation_period_s``); a verdict of the incremental evaluation that
    the full one contradicts (``InterlockEngine.incremental_mismatches``) is a violation of the
    sequence. Here one is forced: a rule's cached verdict is made wrong and kept from being
    re-evaluated until the periodic full evaluation finds it."""
    snaps = snapshots()
    f = snaps.start(len(snaps) // 3)
    f.advance(4 * snaps.tick_s)
    eng = f.sup.engine
    assert eng.incremental_evaluations > f.engine0[0] and eng.full_evaluations > f.engine0[1]
    assert f.violations == [], f.violations
    i = next(i for i, st in enumerate(eng._last) if st.state == "satisfied")
    eng._last[i] = dataclasses.replace(eng._last[i], state="not_satisfied")
    eng._seen.clear()  # nothing looks changed: only the full evaluation re-evaluates that rule
    f.advance(4 * snaps.tick_s)
    assert eng.incremental_mismatches > f.engine0[2]
    assert any("incremental verdict(s) differ from the periodic full evaluation" in v for v in f.violations)
