"""Safety invariants of the supervised cell, checked on the in-process cell's readings.

Used by the hypothesis stateful test, the soak script and the scenario runner:

1. never both hatch doors open;
2. no RTP alpha door open without a docked, locked beta;
3. no robot motion while a VHP cycle is active or H2O2 is at or above the release limit;
4. no clean-side autoclave door opening after a failed (not released) cycle;
5. no product exposed (alpha door or clean-side door opening) before the isolator is
   DECONTAMINATED_RELEASED;
6. no auto-resume: a Held batch leaves Held only by an operator's restart/stop/abort.
"""

from __future__ import annotations

from typing import Any

from ..batch.states import PhaseState


class InvariantMonitor:
    def __init__(self, cell: Any, sup: Any) -> None:
        self.cell, self.sup = cell, sup
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
        self._prev = s
        return v[n0:]
