"""Physics of the VHP unit: H2O2/H2O vapour properties and the exact two-pool step.

The two-pool model (air concentration C, sorbed mass S) and the relative-saturation
criterion are described in :mod:`.vhp`; this module holds the property functions and the
closed-form integrator, free of any cycle logic.
"""

from __future__ import annotations

import math

from .steam import ATMOSPHERIC_KPA, KELVIN_OFFSET, p_sat_kpa

# --- physical constants -------------------------------------------------------------------
PPM_TO_MG_M3 = 1.39  # 1 ppm H2O2 = 1.39 mg/m^3 (25 C, 1 atm); 1 mg/L ~ 720 ppm [V] [EPA-SUM] [NIOSH-H2O2]
M_H2O_G_MOL = 18.015  # molar mass of water (IUPAC standard atomic weights)
R_J_MOL_K = 8.314462618  # molar gas constant (CODATA 2018, exact)
MMHG_KPA = ATMOSPHERIC_KPA / 760.0  # 1 mmHg = 101.325/760 kPa (definition)
# Vapour pressure of pure H2O2: log10(p/mmHg) = A - B/T - C log10(T) + D T, T in K.
# Schumb, Satterfield & Wentworth, "Hydrogen Peroxide", ACS Monograph 128 (1955), as used
# by Manatt & Manatt, Chem. Eur. J. 10 (2004) 6540 [M]; it reproduces the extrapolated
# normal boiling point 150.2 C [BQ] (checked in the tests).
_H2O2_VP = (44.5760, 4025.3, 12.996, 0.0046055)


def h2o2_p_sat_kpa(temp_c: float) -> float:
    """Saturation vapour pressure of pure H2O2 (kPa) at ``temp_c`` ([M], see ``_H2O2_VP``)."""
    t_k = float(temp_c) + KELVIN_OFFSET
    a, b, c, d = _H2O2_VP
    return 10.0 ** (a - b / t_k - c * math.log10(t_k) + d * t_k) * MMHG_KPA


def relative_saturation_pct(temp_c: float, rh_pct: float, h2o2_ppm: float) -> float:
    """Relative saturation (%) of the H2O/H2O2 vapour mixture, ideal-mixture approximation.

    RS = 100 * (p_w / p_ws(T) + p_h / p_hs(T)), with p_w / p_ws(T) = RH / 100 and
    p_h = ppm * 1e-6 * p_atm (see the module docstring for the basis).
    """
    p_h = h2o2_ppm * 1e-6 * ATMOSPHERIC_KPA
    return rh_pct + 100.0 * p_h / h2o2_p_sat_kpa(temp_c)


def water_sat_density_g_m3(temp_c: float) -> float:
    """Saturated water-vapour density (g/m^3), ideal gas: rho = p_ws M / (R T)."""
    t_k = temp_c + KELVIN_OFFSET
    return p_sat_kpa(temp_c) * 1000.0 * M_H2O_G_MOL / (R_J_MOL_K * t_k)


def ppm_to_g_m3(ppm: float) -> float:
    return ppm * PPM_TO_MG_M3 / 1000.0


def g_m3_to_ppm(c_g_m3: float) -> float:
    return c_g_m3 * 1000.0 / PPM_TO_MG_M3


class TwoPoolStep:
    """Exact step of x' = A x + [g, 0] for the two-pool model, x = (C, S).

    A = [[-a, kd/V], [kaA, -(kd+ks)]] has real, distinct eigenvalues whenever k_a A and
    k_d are positive (off-diagonal product > 0). e^{Ah} and its integral are written with
    the two eigenvalues (Sylvester's formula); coefficients are cached per (A, h).
    """

    def __init__(self) -> None:
        self._key: tuple[float, ...] | None = None
        self._coef: tuple[float, ...] = ()

    def __call__(
        self, c: float, s: float, g_per_v: float, a: float, kd_v: float, ka_a: float, kk: float, h: float
    ) -> tuple[float, float]:
        key = (a, kd_v, ka_a, kk, h)
        if key != self._key:
            self._key = key
            self._coef = self._coefficients(a, kd_v, ka_a, kk, h)
        e00, e01, e10, e11, i0, i1 = self._coef
        return (e00 * c + e01 * s + i0 * g_per_v, e10 * c + e11 * s + i1 * g_per_v)

    @staticmethod
    def _coefficients(a: float, kd_v: float, ka_a: float, kk: float, h: float) -> tuple[float, ...]:
        a00, a01, a10, a11 = -a, kd_v, ka_a, -kk
        tr = a00 + a11
        disc = (a00 - a11) ** 2 + 4.0 * a01 * a10
        sq = math.sqrt(disc)

        def integral(lam: float) -> float:  # int_0^h e^{lam s} ds
            z = lam * h
            return h * (math.expm1(z) / z if abs(z) > 1e-12 else 1.0)

        if sq < 1e-15 * max(1.0, abs(tr)):
            # repeated eigenvalue (not reachable with positive k_a, k_d; kept for safety)
            lam = tr / 2.0
            el = math.exp(lam * h)
            e00, e01, e10, e11 = (
                el * (1 + (a00 - lam) * h),
                el * a01 * h,
                el * a10 * h,
                el * (1 + (a11 - lam) * h),
            )
            i_l = integral(lam)
            # int s e^{lam s} ds over [0, h]
            j = (h * el - i_l) / lam if abs(lam) > 1e-15 else h * h / 2.0
            return (e00, e01, e10, e11, i_l + (a00 - lam) * j, a10 * j)
        l1, l2 = (tr + sq) / 2.0, (tr - sq) / 2.0
        x1, x2 = math.exp(l1 * h), math.exp(l2 * h)
        d = l1 - l2
        c0, c1 = (l1 * x2 - l2 * x1) / d, (x1 - x2) / d
        j1, j2 = integral(l1), integral(l2)
        k0, k1 = (l1 * j2 - l2 * j1) / d, (j1 - j2) / d
        return (c0 + c1 * a00, c1 * a01, c1 * a10, c0 + c1 * a11, k0 + k1 * a00, k1 * a10)
