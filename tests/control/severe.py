"""A severe-cold station built from the simulator's parts, for the closed-loop safety tests and
``bench/stress.py``: the kind of city where the Beijing-fitted night setback put rooms below 16 C.

Design outdoor -24 C (a Harbin-like site), three buildings that cool much faster than the demo
station's (a poorly insulated 1980s block whose top-floor corner room loses 1.8 times the
building average through an undersized radiator, a heavy 2000s block, a light new tower) and 10 %
of the room reports lost on the radio. The controller is the shipped ``config/controller.yaml``
with only what a site must set for its climate: the filed curve for -24 C and the outdoor default
(the design outdoor temperature). Room names match the shipped configuration's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from gateway.control.controller import Controller
from gateway.curves import Curve, PhysicalCurve
from sim.params import BuildingParams, RoomParams, RoomSensorParams, StationParams
from sim.station import Station
from sim.weather import SyntheticProfile
from tests.control.conftest import SHANGHAI, controller_config

DESIGN_OUTDOOR_C = -24.0
SEVERE_CURVE = Curve(
    name="severe-radiators", version=1, author="tests", date=dt.date(2026, 10, 1), room_c=18.0,
    min_supply_c=30.0, max_supply_c=85.0,
    physical=PhysicalCurve(design_room_c=18.0, design_outdoor_c=DESIGN_OUTDOOR_C, design_supply_c=75.0,
                           design_return_c=50.0, exponent=1.3),
)


def severe_params() -> StationParams:
    """The demo station rebuilt for -24 C, with faster-cooling buildings and lossier radios."""
    base = StationParams()
    buildings = (
        BuildingParams(name="A", floor_area_m2=9000.0, design_load_w_m2=70.0, time_constant_h=12.0,
                       rooms=(RoomParams("1", 0.92, 0.93),
                              RoomParams("top-corner", 0.08, 2.0, radiator_factor=0.93))),
        BuildingParams(name="B", floor_area_m2=14000.0, design_load_w_m2=50.0, time_constant_h=40.0,
                       rooms=(RoomParams("1", 0.94, 0.96, 0.97),
                              RoomParams("top-corner", 0.06, 1.6, radiator_factor=0.95))),
        BuildingParams(name="C", floor_area_m2=14000.0, design_load_w_m2=32.0, time_constant_h=10.0,
                       rooms=(RoomParams("1", 0.95, 0.97, 0.95),
                              RoomParams("top-corner", 0.05, 1.5, radiator_factor=0.95))),
    )
    return dataclasses.replace(
        base, design_outdoor_c=DESIGN_OUTDOOR_C, buildings=buildings,
        room_sensors=dataclasses.replace(RoomSensorParams(), dropout_probability=0.10))


def severe_station(start: dt.datetime, seed: int = 1, mean_c: float = -20.0,
                   params: StationParams | None = None) -> Station:
    """The severe station in a cold spell: ``mean_c`` with a 5 K daily half-swing and passing fronts."""
    weather = SyntheticProfile(mean_c=mean_c, daily_amplitude_k=5.0, front_std_k=2.5, seed=seed)
    return Station(params or severe_params(), start=start, seed=seed, weather=weather)


def severe_controller(edit: Callable[[dict[str, Any]], None] | None = None) -> Controller:
    """The shipped controller with the severe site's curve and outdoor default."""

    def site(data: dict[str, Any]) -> None:
        data["outdoor"]["default_c"] = DESIGN_OUTDOOR_C
        if edit is not None:
            edit(data)

    config = controller_config(site)
    curves = {name: SEVERE_CURVE for name in config.curves}
    return Controller(dataclasses.replace(config, curves=curves), SHANGHAI)
