"""Saturated steam, lethal rate and F0 (moist-heat sterilisation physics).

- :func:`p_sat_kpa` / :func:`t_sat_c`: the saturation line of water from the
  IAPWS-IF97 region-4 equations (IAPWS R7-97(2012), eq. 30 "saturation-pressure
  equation" and eq. 31 "saturation-temperature equation", coefficients n1..n10 of
  Table 34). Valid from 273.15 K to the critical point 647.096 K; used by the
  autoclave (100-140 C) and by the VHP unit for the water vapour pressure at room
  temperature. IF97 verification values (Tables 35/36) are checked in the tests.
- :func:`lethal_rate`: L(T) = 10^((T - 121.1)/10), T_ref = 121.1 C, z = 10 C
  ([V] [FEDF0], [PHG]).
- :class:`F0Integrator`: F0 in equivalent minutes at 121.1 C, exact for a
  temperature that is piecewise linear in time between samples.
"""

from __future__ import annotations

import math

from .common import require_finite

# --- IAPWS-IF97 region 4 (IAPWS R7-97(2012), Table 34) -------------------------------
_N = (
    0.11670521452767e4,
    -0.72421316703206e6,
    -0.17073846940092e2,
    0.12020824702470e5,
    -0.32325550322333e7,
    0.14915108613530e2,
    -0.48232657361591e4,
    0.40511340542057e6,
    -0.23855557567849,
    0.65017534844798e3,
)
_P_STAR_KPA = 1000.0  # p* = 1 MPa (IF97 eq. 30/31)
KELVIN_OFFSET = 273.15  # 0 C in K (ITS-90 / SI definition)
IF97_T_MIN_K = 273.15  # region-4 validity, IAPWS R7-97(2012) §8.1 [IAPWS-IF97]
IF97_T_CRIT_K = 647.096  # critical temperature of water, IAPWS R7-97(2012)
IF97_P_MIN_KPA = 0.611213  # p_s(273.15 K), IAPWS R7-97(2012) §8.1 [IAPWS-IF97]
IF97_P_CRIT_KPA = 22064.0  # critical pressure 22.064 MPa, IAPWS R7-97(2012)

# --- F0 ([V] [FEDF0]) ---------------------------------------------------------------------
F0_T_REF_C = 121.1  # reference temperature of F0 [FEDF0]
F0_Z_C = 10.0  # z-value for F0 [FEDF0]

ATMOSPHERIC_KPA = 101.325  # standard atmosphere (ISO 2533 / SI conventional value)


def p_sat_kpa(temp_c: float) -> float:
    """Saturation pressure of water (kPa abs) at ``temp_c`` (IAPWS-IF97 eq. 30).

    Raises:
        ValueError: ``temp_c`` not finite or outside 0 C .. critical point.
    """
    t_k = float(temp_c) + KELVIN_OFFSET
    if not math.isfinite(t_k) or not IF97_T_MIN_K <= t_k <= IF97_T_CRIT_K:
        raise ValueError(f"p_sat_kpa: temperature {temp_c!r} C outside IF97 region 4 (0 .. 373.946 C)")
    n = _N
    theta = t_k + n[8] / (t_k - n[9])
    a = theta * theta + n[0] * theta + n[1]
    b = n[2] * theta * theta + n[3] * theta + n[4]
    c = n[5] * theta * theta + n[6] * theta + n[7]
    return _P_STAR_KPA * (2.0 * c / (-b + math.sqrt(b * b - 4.0 * a * c))) ** 4


def t_sat_c(p_kpa: float) -> float:
    """Saturation temperature of water (C) at absolute pressure ``p_kpa`` (IAPWS-IF97 eq. 31).

    Raises:
        ValueError: ``p_kpa`` not finite or outside the triple point .. critical point.
    """
    p = float(p_kpa)
    if not math.isfinite(p) or not IF97_P_MIN_KPA <= p <= IF97_P_CRIT_KPA:
        raise ValueError(f"t_sat_c: pressure {p_kpa!r} kPa outside IF97 region 4")
    n = _N
    beta = (p / _P_STAR_KPA) ** 0.25
    e = beta * beta + n[2] * beta + n[5]
    f = n[0] * beta * beta + n[3] * beta + n[6]
    g = n[1] * beta * beta + n[4] * beta + n[7]
    d = 2.0 * g / (-f - math.sqrt(f * f - 4.0 * e * g))
    t_k = (n[9] + d - math.sqrt((n[9] + d) ** 2 - 4.0 * (n[8] + n[9] * d))) / 2.0
    return t_k - KELVIN_OFFSET


def lethal_rate(temp_c: float, t_ref_c: float = F0_T_REF_C, z_c: float = F0_Z_C) -> float:
    """Lethal rate L = 10^((T - T_ref)/z) ([FEDF0])."""
    return 10.0 ** ((float(temp_c) - t_ref_c) / z_c)


def f0_linear_segment_min(
    dt_s: float, t0_c: float, t1_c: float, t_ref_c: float = F0_T_REF_C, z_c: float = F0_Z_C
) -> float:
    """F0 contribution (min) of a segment where T goes linearly from ``t0_c`` to ``t1_c`` in ``dt_s``.

    Exact integral of L(T(t)) dt: with a = ln(10)/z * (T1 - T0),
    integral = dt * L(T0) * (e^a - 1) / a  (-> dt * L(T0) for a -> 0).
    """
    if dt_s <= 0:
        return 0.0
    a = math.log(10.0) / z_c * (t1_c - t0_c)
    l0 = lethal_rate(t0_c, t_ref_c, z_c)
    factor = math.expm1(a) / a if abs(a) > 1e-12 else 1.0
    return dt_s / 60.0 * l0 * factor


class F0Integrator:
    """Accumulates F0 (equivalent minutes at 121.1 C) from timed temperature samples.

    Between two samples the temperature is taken as linear in time and the lethal
    rate is integrated exactly over that segment.
    """

    def __init__(self, t_ref_c: float = F0_T_REF_C, z_c: float = F0_Z_C) -> None:
        self.t_ref_c = require_finite("t_ref_c", t_ref_c)
        self.z_c = require_finite("z_c", z_c)
        if self.z_c <= 0:
            raise ValueError("z_c must be positive")
        self.f0_min = 0.0
        self._last: tuple[float, float] | None = None

    def reset(self) -> None:
        self.f0_min = 0.0
        self._last = None

    def add(self, time_s: float, temp_c: float) -> float:
        """Add a sample (sim time in s, temperature in C); returns the running F0 (min).

        Raises:
            InvalidCommand: a NaN/inf time or temperature.
            ValueError: time going backwards.
        """
        t = require_finite("time_s", time_s)
        temp = require_finite("temp_c", temp_c)
        if self._last is not None:
            t_prev, temp_prev = self._last
            if t < t_prev:
                raise ValueError(f"F0 samples must not go back in time ({t} < {t_prev})")
            self.f0_min += f0_linear_segment_min(t - t_prev, temp_prev, temp, self.t_ref_c, self.z_c)
        self._last = (t, temp)
        return self.f0_min
