"""Size a circuit's hydraulics from its design load, the way a design office selects equipment.

Only the heat exchanger used to be sized from the load; valve, pump and water volume were the demo
station's numbers, so a bigger station was silently undersized (its valve could not pass the
primary flow it needed). These rules reproduce the demo station's equipment from its own load
(Kvs 63, Kv 60, 60 m3/h at 45 Hz, 30 m3, 0.5 m3, 600 W/K: ``tests/sim/test_station_files.py``
checks it), so any other load gets equipment selected by the same rules. Every value is a
default a station file may override.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.physics import CP_WATER, water_density

KVS_SERIES: tuple[float, ...] = (1.0, 1.6, 2.5, 4.0, 6.3, 10.0, 16.0, 25.0, 40.0, 63.0, 100.0, 160.0, 250.0, 400.0, 630.0)
"""Renard R5 Kvs values of control-valve catalogues (DN15 ... DN200)."""
EXCHANGER_DP_BAR = 0.17
"""Primary pressure drop of a plate pack at its design flow (17 kPa: usual selection, 10-30 kPa)."""
PIPE_LOSS_SHARE = 0.02
"""Buried network loss at design temperatures, as a share of the buildings' design load (~2 %)."""
STATION_NODE_S = 30.0
"""Water between exchanger and supply sensor, in seconds of design flow (the PLC loop is tuned on it)."""
DESIGN_FREQUENCY_HZ = 45.0
"""The pump is selected to deliver the design flow at 45 Hz, keeping 50 Hz as a reserve."""


@dataclass(frozen=True, slots=True)
class Hydraulics:
    """A circuit's sized equipment (the fields ``sim.params`` takes)."""

    valve_kvs: float
    exchanger_primary_kv: float
    pump_design_flow_m3h: float
    system_volume_m3: float
    station_volume_m3: float
    pipe_loss_w_per_k: float


def size_hydraulics(
    load_w: float,
    design_supply_c: float,
    design_return_c: float,
    primary_supply_c: float,
    approach_k: float,
    ground_c: float,
    litres_per_kw: float,
) -> Hydraulics:
    """Equipment for a circuit whose buildings need ``load_w`` at design.

    * pipe loss: ``PIPE_LOSS_SHARE`` of the load at the mean design water temperature, to 50 W/K;
    * pump: the design secondary flow (duty incl. pipe loss over the design spread), rounded up
      to 5 m3/h (1 m3/h below 20 m3/h), at ``DESIGN_FREQUENCY_HZ``;
    * exchanger: primary Kv giving ``EXCHANGER_DP_BAR`` at the design primary flow (primary from
      ``primary_supply_c`` down to the secondary return + approach), to 5 (0.5 below 20);
    * valve: the smallest catalogue Kvs at least the exchanger's Kv (authority ~0.5);
    * water: ``litres_per_kw`` of the duty (radiator networks ~17.5 L/kW, floor heating more),
      to 1 m3 (0.1 m3 below 10 m3); the station node ``STATION_NODE_S`` of design flow.
    """
    mean_c = 0.5 * (design_supply_c + design_return_c)
    pipe = _round_to(PIPE_LOSS_SHARE * load_w / (mean_c - ground_c), 50.0)
    duty = load_w + pipe * (mean_c - ground_c)
    secondary_m3h = duty / (CP_WATER * (design_supply_c - design_return_c)) / water_density(mean_c) * 3600.0
    pump = _round_up(secondary_m3h, 5.0 if secondary_m3h >= 20.0 else 1.0)
    primary_return_c = design_return_c + approach_k
    primary_density = water_density(primary_return_c)
    primary_m3h = duty / (CP_WATER * (primary_supply_c - primary_return_c)) / primary_density * 3600.0
    kv_raw = primary_m3h / math.sqrt(EXCHANGER_DP_BAR / (primary_density / 1000.0))
    kv = max(0.5, _round_to(kv_raw, 5.0 if kv_raw >= 20.0 else 0.5))
    kvs = next((k for k in KVS_SERIES if k >= kv), KVS_SERIES[-1])
    volume_raw = litres_per_kw * duty / 1e6
    volume = max(0.1, _round_to(volume_raw, 1.0 if volume_raw >= 10.0 else 0.1))
    station = max(0.05, _round_to(STATION_NODE_S * pump / 3600.0, 0.05))
    return Hydraulics(
        valve_kvs=kvs,
        exchanger_primary_kv=kv,
        pump_design_flow_m3h=pump,
        system_volume_m3=volume,
        station_volume_m3=station,
        pipe_loss_w_per_k=pipe,
    )


def _round_to(value: float, step: float) -> float:
    return round(round(value / step) * step, 6)


def _round_up(value: float, step: float) -> float:
    return round(math.ceil(value / step - 1e-9) * step, 6)
