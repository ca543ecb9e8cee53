"""Pure physics of a heat-exchange station: water, valve, plate heat exchanger, pump, radiators.

Everything here is a stateless function of its arguments, so each law can be unit-tested on its
own and the station (``sim.station``) only wires them together. Scalar functions use ``math``
because they run in the 1 s inner loop; the radiator functions take numpy arrays because they
run once per slow step for every room at once.

Units: temperatures in degC, heat in W, mass flow in kg/s, volume flow in m3/h, pressure in MPa
unless a name says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

CP_WATER = 4186.0
"""Specific heat of water used by the energy balance, J/(kg K).

IAPWS values are 4179-4195 J/(kg K) over 20-95 degC; one constant keeps the stored heat of a
node exactly ``mass * CP_WATER * T`` so the energy ledger closes to round-off. The heat meter,
like a real EN 1434 calculator, uses the temperature-dependent ``water_cp`` instead.
"""

_CP_TABLE_C = (0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0)
_CP_TABLE_J = (4219.9, 4181.8, 4178.6, 4184.3, 4196.4, 4215.7, 4246.6, 4288.6)


def water_density(t_c: float) -> float:
    """Density of liquid water, kg/m3 (Thiesen-type fit; within 0.05 % of IAPWS at 0-100 degC).

    Used to turn the volume flows that pumps, valves and meters work with into the mass flows
    the energy balance needs. Slightly extrapolated above 100 degC (primary water at 115 degC
    reads ~947 kg/m3, IAPWS 947.0).
    """
    return 1000.0 * (1.0 - (t_c + 288.9414) / (508929.2 * (t_c + 68.12963)) * (t_c - 3.9863) ** 2)


def water_cp(t_c: float) -> float:
    """Specific heat of liquid water at the pressures of a heating network, J/(kg K).

    Linear interpolation in IAPWS-IF97 values (saturated-liquid table, 0-140 degC).
    """
    return float(np.interp(t_c, _CP_TABLE_C, _CP_TABLE_J))


# --- primary side ---------------------------------------------------------------------------


def primary_supply_curve_c(
    t_out_c: float, design_outdoor_c: float, supply_at_design_c: float, supply_min_c: float, min_from_outdoor_c: float
) -> float:
    """The utility's primary supply temperature for an outdoor temperature (quality regulation).

    Straight line from ``supply_at_design_c`` at the design outdoor temperature down to
    ``supply_min_c`` at ``min_from_outdoor_c``, clamped to that range on both sides: colder than
    design the plant is at its limit, milder than the knee the network stays hot enough for
    domestic hot water.
    """
    span = min_from_outdoor_c - design_outdoor_c
    frac = (t_out_c - design_outdoor_c) / span
    frac = min(1.0, max(0.0, frac))
    return supply_at_design_c + (supply_min_c - supply_at_design_c) * frac


def valve_relative_kv(opening_pct: float, rangeability: float, seat_pct: float) -> float:
    """Kv / Kvs of an equal-percentage valve at ``opening_pct`` (0..100).

    Equal percentage: each % of lift changes the flow coefficient by the same fraction,
    Kv/Kvs = R^(x-1), so at x = 0 it would still pass Kvs/R. A real plug closes tight: below
    ``seat_pct`` the characteristic is scaled linearly down to 0, which keeps it continuous
    and monotonic.
    """
    if opening_pct <= 0.0:
        return 0.0
    x = min(opening_pct, 100.0) / 100.0
    kv = float(rangeability ** (x - 1.0))
    if opening_pct < seat_pct:
        kv *= opening_pct / seat_pct
    return kv


def series_kv(kv_a: float, kv_b: float) -> float:
    """Flow coefficient of two resistances in series (1/Kv^2 add, as dp = (Q/Kv)^2 does)."""
    if kv_a <= 0.0 or kv_b <= 0.0:
        return 0.0
    return 1.0 / math.sqrt(1.0 / (kv_a * kv_a) + 1.0 / (kv_b * kv_b))


def kv_flow_m3h(kv: float, dp_mpa: float, density: float) -> float:
    """Volume flow through a flow coefficient: Q = Kv * sqrt(dp[bar] / (rho / 1000)).

    This is how valve authority works here: the available primary differential pressure is
    shared between the valve and the heat exchanger's own resistance (``series_kv``), so the
    installed characteristic is flatter than the valve's inherent one.
    """
    if kv <= 0.0 or dp_mpa <= 0.0:
        return 0.0
    return kv * math.sqrt(dp_mpa * 10.0 * 1000.0 / density)


# --- plate heat exchanger --------------------------------------------------------------------


def counterflow_effectiveness(ntu: float, capacity_ratio: float) -> float:
    """Effectiveness of a counterflow exchanger (epsilon-NTU method).

    eps = (1 - exp(-NTU (1 - Cr))) / (1 - Cr exp(-NTU (1 - Cr))), and NTU / (1 + NTU) in the
    balanced limit Cr -> 1, taken when the two capacity rates are equal to 1e-9.
    """
    if ntu <= 0.0:
        return 0.0
    if capacity_ratio > 1.0 - 1e-9:
        return ntu / (1.0 + ntu)
    e = math.exp(-ntu * (1.0 - capacity_ratio))
    return (1.0 - e) / (1.0 - capacity_ratio * e)


def plate_ua(
    ua_design: float, m_hot: float, m_cold: float, m_hot_design: float, m_cold_design: float, exponent: float
) -> float:
    """UA of a plate exchanger at off-design flows, W/K.

    Each side's film coefficient grows with its flow as h ~ m^exponent (0.6-0.8 for turbulent
    flow in chevron plates). At design the two film resistances are taken as equal halves of
    1/UA (wall resistance neglected), so 1/UA = (0.5/UA_d) * ((m_hd/m_h)^n + (m_cd/m_c)^n).
    """
    if m_hot <= 0.0 or m_cold <= 0.0:
        return 0.0
    r = 0.5 * ((m_hot_design / m_hot) ** exponent + (m_cold_design / m_cold) ** exponent)
    return float(ua_design / r)


def counterflow_duty(c_hot: float, c_cold: float, t_hot_in: float, t_cold_in: float, ua: float) -> float:
    """Heat passed from the hot to the cold stream of a counterflow exchanger, W.

    ``c_hot``/``c_cold`` are capacity rates m*cp in W/K. Negative if the 'hot' stream is the
    colder one (heat then flows backwards, as it would).
    """
    c_min = min(c_hot, c_cold)
    if c_min <= 0.0 or ua <= 0.0:
        return 0.0
    eps = counterflow_effectiveness(ua / c_min, c_min / max(c_hot, c_cold))
    return eps * c_min * (t_hot_in - t_cold_in)


def log_mean_dt(dt_a: float, dt_b: float) -> float:
    """Logarithmic mean of two positive temperature differences (arithmetic mean if equal)."""
    if dt_a <= 0.0 or dt_b <= 0.0:
        raise ValueError("log-mean temperature difference needs two positive differences")
    if abs(dt_a - dt_b) < 1e-9 * max(dt_a, dt_b):
        return 0.5 * (dt_a + dt_b)
    return (dt_a - dt_b) / math.log(dt_a / dt_b)


def counterflow_ua_for_duty(
    duty_w: float, t_hot_in: float, t_hot_out: float, t_cold_in: float, t_cold_out: float
) -> float:
    """UA needed for a duty with the given terminal temperatures: Q / LMTD (counterflow)."""
    return duty_w / log_mean_dt(t_hot_in - t_cold_out, t_hot_out - t_cold_in)


# --- circulation pump ------------------------------------------------------------------------


def pump_flow_m3h(frequency_hz: float, design_flow_m3h: float, design_frequency_hz: float) -> float:
    """Flow of a variable-speed pump on a quadratic system curve: Q ~ n (affinity law)."""
    return design_flow_m3h * max(0.0, frequency_hz) / design_frequency_hz


def pump_head_mpa(frequency_hz: float, design_head_mpa: float, design_frequency_hz: float) -> float:
    """Head of the same pump: H ~ n^2, which on a quadratic system curve keeps the duty point."""
    return design_head_mpa * (max(0.0, frequency_hz) / design_frequency_hz) ** 2


# --- radiators and heating curve ------------------------------------------------------------


def radiator_output(q_nominal: FloatArray, dt_lm: FloatArray, dt_lm_nominal: float, exponent: float) -> FloatArray:
    """Radiator heat output Q = Q_n * (dT_lm / dT_lm_n)^n (EN 442; n ~ 1.3 for panel radiators)."""
    return q_nominal * (np.maximum(dt_lm, 0.0) / dt_lm_nominal) ** exponent


_S_MIN, _S_MAX = -40.0, 6.0  # ln u bounds: Tr - Ta between ~all of D and e^-400 of it


def radiator_return(
    t_supply: FloatArray,
    t_room: FloatArray,
    mass_flow: FloatArray,
    q_nominal: FloatArray,
    dt_lm_nominal: float,
    exponent: float,
    cp: float = CP_WATER,
) -> tuple[FloatArray, FloatArray]:
    """Return temperature and heat output of radiators, solved from their two laws.

    The water gives up m*cp*(Ts - Tr) and the radiator emits Q_n*(dT_lm/dT_lm_n)^n with
    dT_lm = (Ts - Tr) / ln((Ts - Ta)/(Tr - Ta)); both must be equal. With D = Ts - Ta and
    u = ln(D / (Tr - Ta)) > 0 this reduces to one monotone equation in s = ln u,

        (n - 1) ln(1 - e^-u) - n ln u = ln(m cp D^(1-n) / K),   K = Q_n / dT_lm_n^n,

    whose left side falls with slope between -n and -1, so Newton's method from the matching
    asymptote converges in a few steps for any flow. Water colder than the room makes the
    radiator absorb heat by the same law (q < 0), so radiators couple rooms through the water
    in both directions. No flow gives no output and Tr = Ts.
    Returns ``(t_return, q)`` arrays.
    """
    d = t_supply - t_room
    active = (np.abs(d) > 1e-9) & (mass_flow > 0.0) & (q_nominal > 0.0)
    d_abs = np.where(active, np.abs(d), 1.0)
    m_safe = np.where(active, mass_flow, 1.0)
    k = np.where(active, q_nominal, 1.0) / dt_lm_nominal**exponent
    c = np.log(m_safe * cp / k) + (1.0 - exponent) * np.log(d_abs)
    s = np.clip(np.where(c > 0.0, -c, -c / exponent), _S_MIN, _S_MAX)
    for _ in range(30):
        u = np.exp(s)
        g = (exponent - 1.0) * np.log(-np.expm1(-u)) - exponent * s - c
        slope = (exponent - 1.0) * u / np.expm1(u) - exponent
        step = g / slope
        s = np.clip(s - step, _S_MIN, _S_MAX)
        if np.max(np.abs(step)) < 1e-12:
            break
    theta = np.exp(-np.exp(s))
    t_return = np.where(active, t_room + d * theta, t_supply)
    q = np.where(active, m_safe * cp * d * (1.0 - theta), 0.0)
    return t_return, q


def quality_regulation_supply_c(
    t_out_c: float,
    t_room_c: float,
    design_outdoor_c: float,
    design_indoor_c: float,
    design_supply_c: float,
    design_return_c: float,
    exponent: float,
) -> float:
    """Secondary supply temperature that quality regulation asks for (constant flow).

    The heat a room needs scales with q = (T_room - T_out) / (T_room,d - T_out,d); radiators
    deliver it when their mean excess temperature scales with q^(1/m), and with constant flow
    the supply-return spread scales with q itself:
        T_s = T_room + (0.5 (T_s0 + T_r0) - T_room,d) q^(1/m) + 0.5 (T_s0 - T_r0) q.
    For 75/50 at -7.6 degC this gives 75 degC at design. Above ``t_room_c`` outdoors it returns
    the room temperature (no heat needed).
    """
    q = max(0.0, (t_room_c - t_out_c) / (design_indoor_c - design_outdoor_c))
    mean_excess = 0.5 * (design_supply_c + design_return_c) - design_indoor_c
    return float(t_room_c + mean_excess * q ** (1.0 / exponent) + 0.5 * (design_supply_c - design_return_c) * q)
