"""A floor-heating circuit from the shipped mixed station, for the closed-loop tests of the
emitter lag: two 2021 buildings (a light 12 h steel frame and a 30 h concrete block) on 45/35 C
floor heating in a 50-70 mm screed slab, in a Shenyang-like -17 C climate.

The slab's time constant (its heat capacity over its surface conductance, about 10 h here) is a
site fact like the building's, and the controller is told it (``emitter_lag_h``); everything
else is the shipped ``config/controller.yaml`` with the site's curve, rooms and floor supplies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from gateway.control.controller import Controller
from gateway.curves import Curve, PhysicalCurve
from sim.params import StationParams
from sim.station import Station
from sim.station_file import load_station_file
from sim.weather import SyntheticProfile
from tests.control.conftest import CONFIG_DIR, SHANGHAI, controller_config

DESIGN_OUTDOOR_C = -16.9
FLOOR_CURVE = Curve(
    name="floor-45-35", version=1, author="tests", date=dt.date(2026, 10, 1), room_c=18.0,
    min_supply_c=22.0, max_supply_c=50.0,
    physical=PhysicalCurve(design_room_c=18.0, design_outdoor_c=DESIGN_OUTDOOR_C, design_supply_c=45.0,
                           design_return_c=35.0, exponent=1.1),
)
SLAB_LAG_H = 10.5
"""110 kJ/m2K of screed over the surface conductance (design load / 9 K overtemperature), area-weighted."""


def floor_params() -> StationParams:
    """The mixed station's floor-heating circuit as a one-circuit station."""
    plant = load_station_file(CONFIG_DIR / "stations" / "mixed-shenyang.yaml")
    return next(c.params for c in plant.circuits if c.name == "floor")


def floor_station(start: dt.datetime, seed: int = 1, mean_c: float = -15.0) -> Station:
    """The floor circuit in a cold spell: ``mean_c`` with a 5 K daily half-swing and passing fronts."""
    weather = SyntheticProfile(mean_c=mean_c, daily_amplitude_k=5.0, front_std_k=2.5, seed=seed)
    return Station(floor_params(), start=start, seed=seed, weather=weather)


def floor_station_in_season(start: dt.datetime, seed: int) -> Station:
    """The floor circuit in the mixed station's own season weather (the file's climate, weather
    year ``seed``), as ``bench/season.py`` runs it."""
    plant = load_station_file(CONFIG_DIR / "stations" / "mixed-shenyang.yaml")
    return Station(floor_params(), start=start, seed=seed, weather=plant.climate.profile(seed))


def mixed_station_calendar(data: dict[str, Any]) -> None:
    """The mixed station's heating season (1 Nov, two weeks before the shipped default), with the
    cold circulation and commissioning as many days ahead of it as the bench puts them."""
    season = data["season"]
    season.update(cold_circulation_from="10-18", commissioning_from="10-25", heating_from="11-01")
    season["early_start"]["early_from"] = "10-18"


def floor_controller(edit: Callable[[dict[str, Any]], None] | None = None) -> Controller:
    """The shipped controller serving the floor circuit (radiator circuit's settings, site facts replaced)."""
    params = floor_params()
    area = sum(b.floor_area_m2 for b in params.buildings)

    def site(data: dict[str, Any]) -> None:
        data["outdoor"]["default_c"] = DESIGN_OUTDOOR_C
        circuit = data["circuits"]["radiators"]
        circuit["rooms"] = {f"{b.name}-{r.name}": {"temp_tag": f"t{i}_{j}", "age_tag": f"a{i}_{j}"}
                            for i, b in enumerate(params.buildings) for j, r in enumerate(b.rooms)}
        circuit["building_time_constant_h"] = round(
            sum(b.floor_area_m2 * b.time_constant_h for b in params.buildings) / area, 1)
        circuit["emitter_lag_h"] = SLAB_LAG_H
        circuit["return_limit"] = None
        circuit["power_limit"] = None
        circuit["off_supply_c"] = 22
        circuit["frost"]["supply_c"] = 22
        if edit is not None:
            edit(data)

    config = controller_config(site)
    return Controller(dataclasses.replace(config, curves={name: FLOOR_CURVE for name in config.curves}), SHANGHAI)
