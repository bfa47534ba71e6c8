"""Process models of the welder, the sealer, the centrifuge, the cell counter and the container
scanners (issue 14 item 1); the incubator is ``sim/incubator.py``.

Run-style units (welder, sealer, centrifuge, counter) run one operation at a time: the start
command returns a ``run_id`` and the unit reports ``busy`` until the configured time has passed
on the sim clock; the result (PASS/FAIL, a quality score or a count, reasons, alarms) is then
in ``last_result`` and ``get_result`` — the same shape as the VHP and autoclave cycle results.
Simulated quality values are drawn from seeded generators (reproducible runs).

The scanners keep the physical truth of what labelled container stands at each station
(``place`` / ``remove``: what the arm or a transfer does) and read it with faults: ``misread``
(a garbled label: one character of the DIN body substituted, so its ISO 7064 Mod 37-2 check
fails [ISO7064]; a label without a DIN fails its symbology check), ``no_read``, and ``swap`` (a
bag of another COI stands at the station instead of the one placed).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from ..devices.centrifuge.config import CentrifugeConfig
from ..devices.counter.config import CounterConfig
from ..devices.scanner.config import ScannerConfig
from ..devices.sealer.config import SealerConfig
from ..devices.welder.config import WelderConfig
from .clock import Clock
from .common import CommandRefused, FaultHooks, InvalidCommand


def _draw(rng: np.random.Generator, mean: float, sd: float) -> float:
    return float(min(1.0, max(0.0, rng.normal(mean, sd))))


class RunModel:
    """One operation at a time, finished by the sim clock."""

    KIND = ""
    START = ""
    KNOWN_FAULTS: set[str] = set()

    def __init__(self, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.faults = FaultHooks(self.KNOWN_FAULTS)
        self.rng = np.random.default_rng(seed)
        self.busy = False
        self.phase = "IDLE"
        self.run_id = ""
        self.last_result = "NONE"
        self.last_report: dict[str, Any] | None = None
        self._t_start = 0.0
        self._t_end = 0.0
        self._job: dict[str, Any] = {}
        self._n = 0

    # ---- hooks
    def refuse_busy(self) -> None:
        raise NotImplementedError

    def finish(self, job: dict[str, Any]) -> dict[str, Any]:
        """The report fields of a finished run (``result``, ``reasons``, ``alarms``, values)."""
        raise NotImplementedError

    def extra_sensors(self) -> dict[str, Any]:
        return {}

    # ---- shared
    def _begin(self, duration_s: float, job: dict[str, Any], run_id: str | None, phase: str = "RUNNING") -> str:
        if self.busy:
            self.refuse_busy()
        self._n += 1
        self.run_id = run_id or f"{self.KIND.upper()}-{self._n:04d}"
        self._t_start = self.clock.now()
        self._t_end = self._t_start + duration_s
        self._job = dict(job)
        self.busy, self.phase = True, phase
        return self.run_id

    def _end(self, report: dict[str, Any]) -> None:
        rep = {"run_id": self.run_id, "kind": self.KIND, "start": self._t_start,
               "end": min(self.clock.now(), self._t_end),
               "alarms": [], "reasons": [], **report}
        self.last_report = rep
        self.last_result = str(rep["result"])
        self.busy = False
        self.phase = "COMPLETE" if rep["result"] == "PASS" else "FAILED"

    def step(self, dt: float) -> None:
        if self.busy and self.clock.now() >= self._t_end - 1e-9:
            self._end(self.finish(self._job))

    def next_event(self) -> float:
        """Sim time of this unit's next state change (the end of the run in progress; ``math.inf``:
        idle). Stepping to it in one step gives the same run end and result as fine steps."""
        return self._t_end if self.busy else math.inf

    def sensors(self) -> dict[str, Any]:
        score = (self.last_report or {}).get("score")
        return {"busy": self.busy, "phase": self.phase, "last_result": self.last_result,
                "last_score": float(score) if isinstance(score, (int, float)) else None,
                "status.run_id": self.run_id, "status.faults": self.faults.names(), **self.extra_sensors()}

    def status(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "faults": self.faults.names(), "job": dict(self._job)}

    def get_result(self) -> dict[str, Any]:
        return {"result": dict(self.last_report) if self.last_report is not None else None}

    def safe_state(self, reason: str = "") -> dict[str, Any]:
        if self.busy:
            self._end({"result": "FAIL", "reasons": [f"stopped: safe state ({reason or 'requested'})"], **self._job})
        return {}

    def execute(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name not in (self.START, "get_result", "safe_state"):
            raise InvalidCommand(f"unknown {self.KIND} command {name!r}")
        out: dict[str, Any] = getattr(self, name)(**args)
        return out


class WelderModel(RunModel):
    KIND, START = "welder", "weld"
    KNOWN_FAULTS = {"misalignment"}

    def __init__(self, cfg: WelderConfig, clock: Clock, seed: int = 11) -> None:
        super().__init__(clock, seed)
        self.cfg = cfg

    def refuse_busy(self) -> None:
        raise CommandRefused("WELDER_BUSY", "the welder is running")

    def weld(self, container_a: str, coi_a: str, container_b: str, coi_b: str,
             run_id: str | None = None) -> dict[str, Any]:
        if coi_a != coi_b:  # the controller's own check: never connect two COIs (SEG-03)
            raise CommandRefused("WELD_COI_MISMATCH", f"never connect two COIs: {container_a} is of COI {coi_a}, "
                                                      f"{container_b} of COI {coi_b}")
        if container_a == container_b:
            raise InvalidCommand("a weld needs two different containers")
        job = {"container_a": container_a, "container_b": container_b, "coi": coi_a}
        return {"run_id": self._begin(self.cfg.weld_time_s, job, run_id)}

    def finish(self, job: dict[str, Any]) -> dict[str, Any]:
        misaligned = "misalignment" in self.faults
        score = _draw(self.rng, self.cfg.misaligned_score_mean if misaligned else self.cfg.score_mean,
                      self.cfg.score_sd)
        ok = score >= self.cfg.pass_score
        reasons = [] if ok else [f"weld quality {score:.2f} below {self.cfg.pass_score:.2f}"
                                 + (" (tube misalignment)" if misaligned else "")]
        alarms = ([{"time": self.clock.now(), "code": "WELD_MISALIGNED", "text": "tube misalignment"}]
                  if misaligned else [])
        return {"result": "PASS" if ok else "FAIL", "score": score, "reasons": reasons, "alarms": alarms, **job}


class SealerModel(RunModel):
    KIND, START = "sealer", "seal"
    KNOWN_FAULTS = {"heater_failure"}

    def __init__(self, cfg: SealerConfig, clock: Clock, seed: int = 13) -> None:
        super().__init__(clock, seed)
        self.cfg = cfg

    def refuse_busy(self) -> None:
        raise CommandRefused("SEALER_BUSY", "the sealer is running")

    def seal(self, container_id: str, run_id: str | None = None) -> dict[str, Any]:
        return {"run_id": self._begin(self.cfg.seal_time_s, {"container_id": container_id}, run_id)}

    def finish(self, job: dict[str, Any]) -> dict[str, Any]:
        bad = "heater_failure" in self.faults
        score = _draw(self.rng, self.cfg.heater_fault_score_mean if bad else self.cfg.score_mean, self.cfg.score_sd)
        ok = score >= self.cfg.pass_score
        reasons = [] if ok else [f"seal quality {score:.2f} below {self.cfg.pass_score:.2f}"
                                 + (" (sealing head heater failed)" if bad else "")]
        return {"result": "PASS" if ok else "FAIL", "score": score, "reasons": reasons, **job}


class CentrifugeModel(RunModel):
    """Phases ACCEL → SPIN → DECEL. The ``imbalance`` fault (``extra_g``, default twice the
    tolerance) adds an undeclared mass difference: the imbalance sensor trips the run during
    acceleration when the true difference is over the tolerance; the rotor stops (result FAIL)."""

    KIND, START = "centrifuge", "run"
    KNOWN_FAULTS = {"imbalance"}

    def __init__(self, cfg: CentrifugeConfig, clock: Clock, seed: int = 17) -> None:
        super().__init__(clock, seed)
        self.cfg = cfg
        self.imbalance = False
        self._program: Any = None
        self._tripped = False

    def refuse_busy(self) -> None:
        raise CommandRefused("CENTRIFUGE_BUSY", "the centrifuge is running")

    def run(self, program: str, container_id: str, load_g: float, counterweight_g: float,
            run_id: str | None = None) -> dict[str, Any]:
        try:
            p = self.cfg.program(program)
        except KeyError as exc:
            raise InvalidCommand(str(exc.args[0])) from None
        for name, v in (("load_g", load_g), ("counterweight_g", counterweight_g)):
            if not (math.isfinite(v) and 0 < v <= self.cfg.max_load_g):
                raise InvalidCommand(f"{name} must be in (0, {self.cfg.max_load_g:g}] g, got {v!r}")
        diff = abs(load_g - counterweight_g)
        if diff > self.cfg.imbalance_tolerance_g:
            raise CommandRefused("CFG_IMBALANCE", f"load {load_g:g} g vs counterweight {counterweight_g:g} g: "
                                                  f"difference {diff:g} g over the tolerance "
                                                  f"{self.cfg.imbalance_tolerance_g:g} g")
        self._program, self._tripped = p, False
        job = {"program": p.id, "container_id": container_id, "load_g": load_g, "counterweight_g": counterweight_g,
               "rcf_g": p.rcf_g}
        rid = self._begin(p.accel_s + p.duration_s + p.decel_s, job, run_id, phase="ACCEL")
        self.imbalance = False
        return {"run_id": rid}

    def _true_imbalance_g(self) -> float:
        f = self.faults.active("imbalance")
        extra = float(f.get("extra_g", 2.0 * self.cfg.imbalance_tolerance_g)) if f is not None else 0.0
        return abs(self._job.get("load_g", 0.0) - self._job.get("counterweight_g", 0.0)) + extra

    def step(self, dt: float) -> None:
        if not self.busy or self._program is None:
            return
        p, now = self._program, self.clock.now()
        t = now - self._t_start
        if not self._tripped and t > 0 and self._true_imbalance_g() > self.cfg.imbalance_tolerance_g:
            self._tripped = self.imbalance = True  # the imbalance sensor trips at spin-up: the rotor stops
            self._t_end = now + p.decel_s * min(1.0, t / p.accel_s if p.accel_s > 0 else 1.0)
            self.phase = "DECEL"
        if now >= self._t_end - 1e-9:
            self._end(self.finish(self._job))
            return
        if not self._tripped:
            self.phase = "ACCEL" if t < p.accel_s else ("SPIN" if t < p.accel_s + p.duration_s else "DECEL")

    def next_event(self) -> float:
        """The run's end (its ACCEL/SPIN/DECEL boundaries change only ``phase`` and ``rcf_g``, which
        no supervisor logic acts on); with a fault injected the current time (an imbalance trips
        at once: step finely)."""
        if not self.busy or self._program is None:
            return math.inf
        if self.faults.names() and not self._tripped:
            return self.clock.now()
        return self._t_end

    def rcf_now(self) -> float:
        if not self.busy or self._program is None:
            return 0.0
        p, now = self._program, self.clock.now()
        t = now - self._t_start
        if self.phase == "ACCEL":
            return p.rcf_g * min(1.0, t / p.accel_s) if p.accel_s > 0 else p.rcf_g
        if self.phase == "SPIN":
            return float(p.rcf_g)
        left = max(0.0, self._t_end - now)
        return p.rcf_g * min(1.0, left / p.decel_s) if p.decel_s > 0 else 0.0

    def finish(self, job: dict[str, Any]) -> dict[str, Any]:
        if self._tripped:
            g = self._true_imbalance_g()
            return {"result": "FAIL", "imbalance_g": g, **job,
                    "reasons": [f"imbalance trip: {g:g} g over the tolerance {self.cfg.imbalance_tolerance_g:g} g"],
                    "alarms": [{"time": self.clock.now(), "code": "CFG_IMBALANCE", "text": "imbalance trip"}]}
        return {"result": "PASS", "imbalance_g": self._true_imbalance_g(), **job}

    def extra_sensors(self) -> dict[str, Any]:
        return {"rcf_g": float(self.rcf_now()), "imbalance": self.imbalance, "lid_locked": self.busy}


class CounterModel(RunModel):
    KIND, START = "counter", "count"
    KNOWN_FAULTS = {"clog"}

    def __init__(self, cfg: CounterConfig, clock: Clock) -> None:
        super().__init__(clock, cfg.seed)
        self.cfg = cfg

    def refuse_busy(self) -> None:
        raise CommandRefused("COUNTER_BUSY", "the counter is running")

    def count(self, sample_id: str, run_id: str | None = None) -> dict[str, Any]:
        return {"run_id": self._begin(self.cfg.count_time_s, {"sample_id": sample_id}, run_id)}

    def sample_values(self, sample_id: str) -> tuple[float, float]:
        """(viable cells/mL, viability %) of a sample: reproducible per sample id and seed."""
        rng = np.random.default_rng([self.cfg.seed, zlib.crc32(sample_id.encode())])
        viable = self.cfg.viable_median_per_ml * math.exp(self.cfg.viable_sigma_log * float(rng.standard_normal()))
        viability = min(99.9, max(1.0, float(rng.normal(self.cfg.viability_mean_pct, self.cfg.viability_sd_pct))))
        return viable, viability

    def finish(self, job: dict[str, Any]) -> dict[str, Any]:
        if "clog" in self.faults:
            return {"result": "FAIL", "reasons": ["fluidics clogged: no count"], **job,
                    "alarms": [{"time": self.clock.now(), "code": "COUNTER_CLOG", "text": "fluidics clogged"}]}
        viable, viability = self.sample_values(job["sample_id"])
        return {"result": "PASS", "viable_per_ml": viable, "viability_pct": viability,
                "total_per_ml": viable / (viability / 100.0), **job}

    def extra_sensors(self) -> dict[str, Any]:
        r = self.last_report or {}
        v, p = r.get("viable_per_ml"), r.get("viability_pct")
        return {"last_viable_per_ml": float(v) if isinstance(v, float) else None,
                "last_viability_pct": float(p) if isinstance(p, float) else None}


def garble(label: str) -> tuple[str, bool]:
    """A misread of ``label``: (payload, symbology_ok). One character of the DIN body is
    substituted (ISO 7064 Mod 37-2 detects every single substitution [ISO7064]); without a
    DIN a character of the container id is, and the 2D code's own check fails."""
    parts = label.split("|")
    for i, p in enumerate(parts):
        if p.startswith("DIN:"):
            v = p[4:]
            lead = "=" if v.startswith("=") else ""
            body = v[len(lead):]
            if len(body) >= 13:
                c = body[12]
                sub = str((int(c) + 1) % 10) if c.isdigit() else ("A" if c != "A" else "B")
                parts[i] = "DIN:" + lead + body[:12] + sub + body[13:]
                return "|".join(parts), True
    for i, p in enumerate(parts):
        if p.startswith("CID:") and len(p) > 4:
            last = p[-1]
            parts[i] = p[:-1] + ("X" if last != "X" else "Y")
            return "|".join(parts), False
    return label[::-1], False


class ScannerModel:
    """One reader per station; the physical truth of the stations."""

    KNOWN_FAULTS = {"misread", "no_read", "swap"}

    def __init__(self, cfg: ScannerConfig, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.faults = FaultHooks(self.KNOWN_FAULTS)
        self.truth: dict[str, tuple[str, str] | None] = {s: None for s in cfg.stations}
        """station -> (container_id, label) physically there, or None"""
        self.last: dict[str, tuple[str, str]] = {s: ("", "") for s in cfg.stations}
        self.reads = 0

    def _station(self, station: str) -> str:
        if station not in self.truth:
            raise InvalidCommand(f"unknown station {station!r}; known: {list(self.truth)}")
        return station

    def _applies(self, fault: str, station: str) -> dict[str, Any] | None:
        f = self.faults.active(fault)
        if f is None or f.get("station") not in (None, station):
            return None
        return f

    def next_event(self) -> float:
        """The scanners change only on a command (``math.inf``) or, with ``swap`` injected, at once."""
        return self.clock.now() if "swap" in self.faults else math.inf

    def step(self, dt: float) -> None:
        if "swap" not in self.faults:
            return
        for st in self.truth:
            f = self._applies("swap", st)
            if f is not None and self.truth[st] is not None and self.truth[st] != self._swapped(f):
                self.truth[st] = self._swapped(f)

    @staticmethod
    def _swapped(f: dict[str, Any]) -> tuple[str, str]:
        return (str(f.get("container_id", "SWAPPED")), str(f.get("label", "COI:OTHER-COI|CID:SWAPPED")))

    def place(self, station: str, container_id: str, label: str) -> dict[str, Any]:
        st = self._station(station)
        here = self.truth[st]
        if here is not None and here[0] != container_id:
            raise CommandRefused("SCAN_STATION_OCCUPIED", f"station {st} holds container {here[0]}")
        f = self._applies("swap", st)
        self.truth[st] = self._swapped(f) if f is not None else (container_id, label)
        return {"station": st}

    def remove(self, station: str) -> dict[str, Any]:
        st = self._station(station)
        self.truth[st] = None
        return {"station": st}

    def scan(self, station: str) -> dict[str, Any]:
        st = self._station(station)
        self.reads += 1
        here = self.truth[st]
        out: dict[str, Any] = {"station": st, "reader_id": self.cfg.reader_id(st), "t": self.clock.now(),
                               "payload": None, "symbology_ok": True, "read_failed": False}
        if here is None or self._applies("no_read", st) is not None:
            out["read_failed"] = True
            self.last[st] = ("NO_READ", "")
            return out
        payload, ok = (garble(here[1]) if self._applies("misread", st) is not None else (here[1], True))
        out["payload"], out["symbology_ok"] = payload, ok
        self.last[st] = ("OK", payload)
        return out

    def safe_state(self, reason: str = "") -> dict[str, Any]:
        return {}

    def sensors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for st in self.truth:
            out[f"station.{st}.occupied"] = self.truth[st] is not None
            out[f"station.{st}.last_status"] = self.last[st][0]
            out[f"station.{st}.last_payload"] = self.last[st][1]
        return out

    def status(self) -> dict[str, Any]:
        return {"faults": self.faults.names(), "reads": self.reads}

    def execute(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name not in ("scan", "place", "remove", "safe_state"):
            raise InvalidCommand(f"unknown scanner command {name!r}")
        out: dict[str, Any] = getattr(self, name)(**args)
        return out
