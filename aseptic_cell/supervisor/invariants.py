"""Safety invariants of the supervised cell, checked on the in-process cell's readings.

Used by the hypothesis stateful test, the soak script and the scenario runner:

1. never both hatch doors open;
2. no RTP alpha door open without a docked, locked beta;
3. no robot motion while a VHP cycle is active or H2O2 is at or above the release limit;
4. no clean-side autoclave door opening after a failed (not released) cycle;
5. no product exposed (alpha door or clean-side door opening) before the isolator is
   DECONTAMINATED_RELEASED;
6. no auto-resume: a Held batch leaves Held only by an operator's restart/stop/abort;
7. no product exposure above the action limit without a hold: a batch still Running in an
   open-product phase (``alarms.yaml`` ``open_product_phase_types``) ``em_grace_s`` after the
   isolator's particle action excursion began (Annex 1 §9 [ANNEX1-2022]);
8. no bypass of a critical rule: no active bypass of a row that is critical or not marked
   ``bypassable``, none approved by its requester, none left active past its expiry
   (IEC 61511-1 §11.7.3 [IEC61511-1]). Checked where the supervisor has bypass management.
"""

from __future__ import annotations

from typing import Any

from ..batch.states import PhaseState


class InvariantMonitor:
    def __init__(self, cell: Any, sup: Any, *, em_grace_s: float = 10.0) -> None:
        self.cell, self.sup = cell, sup
        self.em_grace_s = float(em_grace_s)
        self._excursion_since: float | None = None
        self.open_types = set(getattr(cell.cfg.alarms, "open_product_phase_types", None) or [])
        rules = getattr(cell.cfg.interlocks, "rules", [])
        self.never_bypassed = {r.id for r in rules
                               if r.severity == "critical" or not getattr(r, "bypassable", False)}
        self.cfg = cell.cfg
        self.release_ppm = float(self.cfg.interlocks.parameters.get("h2o2_release_ppm", 1.0))
        self.rtps = [r.id for r in self.cfg.layout.isolator.rtps]
        self.violations: list[str] = []
        self._prev: dict[str, Any] | None = None
        self._users = {u.id for u in self.cfg.users.users}
        sup.sm.add_listener(self._on_batch)

    def _on_batch(self, tr: Any) -> None:
        if tr.old is PhaseState.HELD and tr.actor not in self._users:
            self.violations.append(f"t={tr.t:.0f}: auto-resume: batch left Held by {tr.actor!r} ({tr.command})")
        if tr.new is PhaseState.RUNNING and tr.old is PhaseState.RESTARTING:
            pass

    def _snapshot(self) -> dict[str, Any]:
        c = self.cell
        iso, vhp, ac, arm = (c.sensors(n) for n in ("isolator", "vhp", "autoclave", "arm"))
        s = {
            "A_closed": iso.get("hatch.door_A") == "closed", "B_closed": iso.get("hatch.door_B") == "closed",
            "decon": iso.get("decon_status"), "vhp_active": bool(vhp.get("cycle_active")),
            "ppm": max(float(vhp.get("h2o2_ppm") or 0.0), float(vhp.get("h2o2_ppm_b") or 0.0)),
            "arm_moving": bool(arm.get("moving")), "unload_closed": bool(ac.get("unload_door_closed")),
            "unload_ok": bool(ac.get("unload_released")) or bool(ac.get("unload_override")),
            "excursion": iso.get("particles.action_excursion") is True,
        }
        for r in self.rtps:
            s[f"{r}.alpha_closed"] = bool(iso.get(f"rtp.{r}.alpha_closed"))
            s[f"{r}.beta_ok"] = bool(iso.get(f"rtp.{r}.beta_docked")) and bool(iso.get(f"rtp.{r}.beta_locked"))
        return s

    def check(self) -> list[str]:
        """Check the current state (call after every step); returns the new violations."""
        n0 = len(self.violations)
        s = self._snapshot()
        p = self._prev or s
        t = self.cell.now()
        v = self.violations
        if not s["A_closed"] and not s["B_closed"]:
            v.append(f"t={t:.0f}: both hatch doors open")
        for r in self.rtps:
            if not s[f"{r}.alpha_closed"] and not s[f"{r}.beta_ok"]:
                v.append(f"t={t:.0f}: {r} alpha door open without a docked, locked beta")
            if p[f"{r}.alpha_closed"] and not s[f"{r}.alpha_closed"] and p["decon"] != "DECONTAMINATED_RELEASED":
                v.append(f"t={t:.0f}: {r} alpha opened (product exposed) while isolator {p['decon']}")
        if s["arm_moving"] and (s["vhp_active"] or s["ppm"] >= self.release_ppm):
            v.append(f"t={t:.0f}: robot moving while VHP active={s['vhp_active']} H2O2={s['ppm']:.2f} ppm")
        if p["unload_closed"] and not s["unload_closed"]:
            if not p["unload_ok"]:
                v.append(f"t={t:.0f}: clean-side autoclave door opened without a PASS cycle")
            if p["decon"] != "DECONTAMINATED_RELEASED":
                v.append(f"t={t:.0f}: clean-side door opened (product exposed) while isolator {p['decon']}")
        self._check_em(s, t)
        self._check_bypasses(t)
        self._prev = s
        return v[n0:]

    def _open_product_phase(self) -> str | None:
        sup = self.sup
        phase = getattr(sup, "active_phase", None)
        if not phase or getattr(getattr(sup, "sm", None), "state", None) is not PhaseState.RUNNING:
            return None
        try:
            kind = sup.phase_type(phase)
        except Exception:
            return None
        return phase if kind in self.open_types else None

    def _check_em(self, s: dict[str, Any], t: float) -> None:
        if not s["excursion"]:
            self._excursion_since = None
            return
        if self._excursion_since is None:
            self._excursion_since = t
        phase = self._open_product_phase()
        if phase is not None and t - self._excursion_since > self.em_grace_s:
            self.violations.append(
                f"t={t:.0f}: product exposed in {phase} above the particle action limit for "
                f"{t - self._excursion_since:.0f} s without a hold")
            self._excursion_since = t  # report once per grace period

    def _check_bypasses(self, t: float) -> None:
        bp = getattr(getattr(self.sup, "operator", None), "bypasses", None)
        if bp is None:
            return
        for b in bp.items.values():
            if b.state != "ACTIVE":
                continue
            if b.rule in self.never_bypassed:
                self.violations.append(f"t={t:.0f}: bypass {b.id} of {b.rule}, a critical or non-bypassable rule")
            if b.approved_by == b.requested_by:
                self.violations.append(f"t={t:.0f}: bypass {b.id} approved by its requester {b.requested_by}")
            if t > b.expires_t + self.em_grace_s:
                self.violations.append(f"t={t:.0f}: bypass {b.id} still active {t - b.expires_t:.0f} s after expiry")
