"""Whole heating seasons in the simulator: stations x weather seeds x control strategies (not run in CI).

Run: ``.venv/bin/python bench/season.py`` (the demo station, seeds 1 and 2) or
``.venv/bin/python bench/season.py --station config/stations/*.yaml`` for the matrix
(``--help`` for options). A season takes 1-5 CPU minutes per strategy on the test machine
(bench/RESULTS.md).

Every station comes from a station file (``sim.station_file``): its buildings and circuits, its
climate (weather seeded by ``--seeds``, default the file's seed and the next one) and its season
dates. Each circuit gets a heating curve derived from its design, the physical form of
``gateway.curves`` (75/50 at the design outdoor temperature for 18 C rooms, as the demo's filed
``config/curves/radiators-75-50.yaml``; min 30 C, max design + 10 C, at most 90 C; floor heating
min 22 C, max design + 5 C). Strategies, all on the same station, weather and start state, each
writing every circuit's PLC supply setpoint every ``--cycle`` seconds (rounded to the register's
0.1 K, clamped to the writable range: 30-90 C for radiators as the demo station file says, 22-55 C
for floor heating):

* (a) the fixed design curve, read at the measured outdoor temperature, nothing else;
* (b) Danfoss-ECL style: the same curve shifted by a proportional room influence,
  ``2.5 x curve slope x (18 C - coldest valid room of the circuit)``, no integral, no setback;
* (c) heatgw: ``gateway.control.Controller`` with the shipped ``config/controller.yaml`` for every
  station, only the site facts replaced (``site_controller_data``): the curves, the outdoor
  default (the design temperature), the season calendar, the rooms of each circuit, the
  building time constant (area-weighted), the return and power limit lines scaled to the
  circuit's design, and a floor circuit's slab time constant (``emitter_lag_h``) and its off and
  frost supply at its curve's 22 C minimum; instruments as the gateway sees them
  (``tooling.harness.inputs_from``: rooms every 5-15 min, 0.1 K, some reports lost; each circuit's limiters read its own
  exchanger's branch).

Comfort is judged on the TRUE room temperatures at every cycle: occupied hours are 06:00-21:00
site time. A room-day's refund tier uses that room's lowest hourly mean during the occupied hours
of that day (Zibo rule tiers: 16-18 C: 20 %, 12-16 C: 50 %, < 12 C: 100 %). Heat is what the
primary side gave up in the exchangers (the simulator's energy ledger).

``--radiator ROOM=FACTOR`` runs every strategy on a changed station instead, e.g.
``--radiator A-top-corner=1.0`` for the demo's corner room with a correctly sized radiator.
"""

from __future__ import annotations

import argparse
import copy
import csv
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.control.controller import Controller  # noqa: E402
from gateway.control.curve_cli import plot_curve  # noqa: E402
from tooling.harness import REGISTER_STEP_C, inputs_from  # noqa: E402
from gateway.control.loader import ControllerFile, resolve_curves  # noqa: E402
from gateway.control.settings import ControllerConfig  # noqa: E402
from gateway.control.model import ControllerDecision, ControllerInputs, Reading  # noqa: E402
from gateway.curves import Curve, PhysicalCurve  # noqa: E402
from sim.params import EmitterKind, StationParams  # noqa: E402
from sim.plant import CircuitParams, Plant, PlantParams  # noqa: E402
from sim.station_file import load_station_file  # noqa: E402
from sim.weather import heating_season  # noqa: E402

WRITE_RANGE_C = {EmitterKind.RADIATORS: (30.0, 90.0), EmitterKind.FLOOR: (22.0, 55.0)}
ECL_INFLUENCE = 2.5
ROOM_TARGET_C = 18.0
ROOM_MAX_AGE_S = 1800.0
CURVE_ROOM_C = 18.0
DEMO_STATION = ROOT / "config" / "stations" / "demo-beijing.yaml"
LABELS = {"a": "(a) fixed curve", "b": "(b) ECL-style", "c": "(c) heatgw", "a'": "(a') GB 50736 curve (reference)"}


@dataclass(frozen=True)
class Result:
    """One strategy's season on one station and weather seed."""

    station: str
    seed: int
    key: str
    heat_gj: float
    area_m2: float
    occupied_share: float  # share of occupied time with every room >= 18 C
    hours_below_16: float
    tiers: tuple[int, int, int]  # room-days 16-18, 12-16, < 12
    room_days: int
    min_room_c: float
    coldest_room: str
    cpu_s: float

    @property
    def gj_per_m2(self) -> float:
        return self.heat_gj / self.area_m2


def circuit_curve(station: str, circuit: CircuitParams, room_c: float = CURVE_ROOM_C) -> Curve:
    """The heating curve a circuit's design implies (what the station would file with dispatch).

    ``room_c`` is the room temperature the curve serves at its design point: 18 C for the filed
    curves, the station's design indoor temperature for the (a') reference.
    """
    p = circuit.params
    floor = p.emitter.kind is EmitterKind.FLOOR
    return Curve(
        name=f"{station}-{circuit.name}", version=1, author="bench/season.py, from the station file",
        date=date(2026, 10, 1), circuit=circuit.name, room_c=room_c,
        min_supply_c=22.0 if floor else 30.0,
        max_supply_c=p.design_supply_c + 5.0 if floor else min(90.0, p.design_supply_c + 10.0),
        physical=PhysicalCurve(design_room_c=room_c, design_outdoor_c=p.design_outdoor_c,
                               design_supply_c=p.design_supply_c, design_return_c=p.design_return_c,
                               exponent=p.radiator_exponent))


def _month_day(pair: tuple[int, int], shift_days: int = 0) -> str:
    moment = date(2026, *pair) + timedelta(days=shift_days)
    return f"{moment.month:02d}-{moment.day:02d}"


def site_controller_data(base: dict[str, Any], plant: PlantParams, curve_files: dict[str, Path]) -> dict[str, Any]:
    """The shipped controller file with this station's site facts in place of the demo's.

    Everything else (comfort, trims, optimum start, ramps, gains of the limiters) stays as
    shipped: one controller configuration for every station.
    """
    data = copy.deepcopy(base)
    ctl = data["controller"]
    ctl["outdoor"]["default_c"] = plant.climate.design_outdoor_c
    season = ctl["season"]
    start, until = plant.season.heating_from, plant.season.heating_until
    season["cold_circulation_from"] = _month_day(start, -14)
    season["commissioning_from"] = _month_day(start, -7)
    season["heating_from"] = _month_day(start)
    season["heating_until"] = _month_day(until)
    season["early_start"]["early_from"] = _month_day(start, -14)
    season["early_start"]["extension_until"] = _month_day(until, 21)
    template = next(iter(ctl["circuits"].values()))
    circuits = {}
    for index, c in enumerate(plant.circuits):
        p = c.params
        circuit = copy.deepcopy(template)
        circuit["curve"] = str(curve_files[c.name])
        prefix = f"c{index}_" if index else ""  # the register names of sim.registers
        circuit["setpoint_tag"] = prefix + "supply_setpoint"
        circuit["supply_tag"] = prefix + "secondary_supply_temp"
        circuit["rooms"] = {f"{b.name}-{r.name}": {"temp_tag": f"t{i}_{j}", "age_tag": f"a{i}_{j}"}
                            for i, b in enumerate(p.buildings) for j, r in enumerate(b.rooms)}
        area = sum(b.floor_area_m2 for b in p.buildings)
        circuit["building_time_constant_h"] = round(
            sum(b.floor_area_m2 * b.time_constant_h for b in p.buildings) / area, 1)
        design_return = p.design_return_c + p.heat_exchanger.approach_k  # the primary return at design
        design = p.design_outdoor_c
        circuit["return_limit"]["line"] = [{"outdoor_c": design - 7.4, "value": design_return + 9},
                                           {"outdoor_c": design, "value": design_return + 5},
                                           {"outdoor_c": 15, "value": design_return - 7}]
        load_kw = sum(b.floor_area_m2 * b.design_load_w_m2 for b in p.buildings) / 1000.0
        circuit["power_limit"]["line"] = [{"outdoor_c": 0, "value": round(1.37 * load_kw, -1)}]
        if p.emitter.kind is EmitterKind.FLOOR:
            # The slab's time constant: its heat capacity over its surface conductance (the design
            # load passes at the design overtemperature), area-weighted like the buildings'.
            circuit["emitter_lag_h"] = round(sum(
                b.floor_area_m2 * p.emitter.slab_capacity_j_m2k * p.emitter.slab_overtemperature_k
                / b.design_load_w_m2 / 3600.0 for b in p.buildings) / area, 1)
            circuit["off_supply_c"] = 22
            circuit["frost"]["supply_c"] = 22
        circuits[c.name] = circuit
    ctl["circuits"] = circuits
    return data


def controller_config(path: Path, plant: PlantParams, curve_dir: Path, overrides: list[str]) -> ControllerConfig:
    """(c)'s configuration: the shipped file, this station's facts, ``--set dotted.key=value`` overrides."""
    curve_files = {}
    for c in plant.circuits:
        curve_files[c.name] = curve_dir / f"{c.name}.yaml"
        curve = circuit_curve(plant.name, c)
        curve_files[c.name].write_text(yaml.safe_dump({"curve": curve.model_dump(mode="json", exclude_none=True)}))
    data = site_controller_data(yaml.safe_load(path.read_text()), plant, curve_files)
    for override in overrides:
        key, _, value = override.partition("=")
        node = data["controller"]
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    return resolve_curves(ControllerFile.model_validate(data).controller, curve_dir, path)


def _register(value: float) -> float:
    return round(value, 1)


Strategy = Callable[[Plant], ControllerDecision | None]
"""One control cycle on the plant; (c) returns its decision (the published state), the curves nothing."""


def curve_strategy(curves: list[Curve], ranges: list[tuple[float, float]], ecl: bool) -> Strategy:
    """(a) every circuit on its curve at the measured outdoor temperature; (b) plus ECL's room influence."""
    def step(plant: Plant) -> None:
        for station, curve, (low, high) in zip(plant.circuits, curves, ranges, strict=True):
            m = station.measurements()
            outdoor = _register(m.outdoor_c)
            value = float(curve.supply_at(outdoor))
            rooms = [r.temperature_c for r in m.rooms if r.temperature_c is not None and r.age_s <= ROOM_MAX_AGE_S]
            if ecl and rooms:
                slope = float(curve.supply_at(outdoor - 0.5) - curve.supply_at(outdoor + 0.5))
                value += ECL_INFLUENCE * slope * (ROOM_TARGET_C - min(rooms))
            station.plc.supply_setpoint_c = _register(min(high, max(low, value)))
    return step


def heatgw_strategy(controller: Controller, names: tuple[str, ...]) -> Strategy:
    """(c) the controller deciding every circuit at once, as ``SimLoop`` does for one."""
    def step(plant: Plant) -> ControllerDecision:
        each = [station.measurements() for station in plant.circuits]
        settings = controller.config.settings
        circuits = {name: inputs_from(m, settings.circuits[name], station.plc.supply_setpoint_c)
                    for name, m, station in zip(names, each, plant.circuits, strict=True)}
        outdoor = round(round(each[0].outdoor_c / REGISTER_STEP_C) * REGISTER_STEP_C, 6)
        decision = controller.step(ControllerInputs(Reading(outdoor), circuits), each[0].timestamp)
        for name, station in zip(names, plant.circuits, strict=True):
            station.plc.supply_setpoint_c = round(decision.setpoints[name] / REGISTER_STEP_C) * REGISTER_STEP_C
        return decision
    return step


def make_strategy(key: str, params: PlantParams, args: argparse.Namespace, curve_dir: Path) -> Strategy:
    """Strategy ``key`` (a, b, c, a') for this station; (c)'s curve files are written to ``curve_dir``."""
    if key == "c":
        from zoneinfo import ZoneInfo

        config = controller_config(args.controller, params, curve_dir, args.set)
        tz = ZoneInfo("Asia/Shanghai") if params.utc_offset_h == 8.0 else UTC
        return heatgw_strategy(Controller(config, tz), tuple(c.name for c in params.circuits))
    room_c = params.circuits[0].params.design_indoor_c if key == "a'" else CURVE_ROOM_C
    curves = [circuit_curve(params.name, c, room_c) for c in params.circuits]
    ranges = [WRITE_RANGE_C[c.params.emitter.kind] for c in params.circuits]
    return curve_strategy(curves, ranges, ecl=key == "b")


def with_radiators(plant: PlantParams, radiators: list[str]) -> PlantParams:
    """The station with ``ROOM=FACTOR`` radiator changes (``A-top-corner=1.0``)."""
    factors = {}
    for item in radiators:
        room, _, factor = item.partition("=")
        factors[room] = float(factor)

    def changed(params: StationParams) -> StationParams:
        buildings = tuple(
            replace(b, rooms=tuple(replace(r, radiator_factor=factors.pop(f"{b.name}-{r.name}", r.radiator_factor))
                                   for r in b.rooms))
            for b in params.buildings)
        return replace(params, buildings=buildings)

    circuits = tuple(replace(c, params=changed(c.params)) for c in plant.circuits)
    if factors:
        raise SystemExit(f"--radiator: no such room {', '.join(factors)}")
    return replace(plant, circuits=circuits)


Points = list[tuple[float, float]]


def run_strategy(station_file: Path, seed: int, key: str, args: argparse.Namespace) -> tuple[Result, Points]:
    """Simulate one season of one station under one strategy; also circuit 0's hourly (outdoor, setpoint)."""
    started = time.process_time()
    params = with_radiators(load_station_file(station_file), args.radiator)
    start, end = season_window(args, params)
    plant = Plant(params, start=start.astimezone(UTC), seed=seed)
    names = plant.room_names
    with tempfile.TemporaryDirectory() as curve_dir:
        step = make_strategy(key, params, args, Path(curve_dir))
        heat0 = plant.ledger.primary_in
        n = int(round((end - start).total_seconds() / args.cycle))
        rooms = np.empty((n, len(names)))
        local_hour = np.empty(n)
        points: Points = []
        for i in range(n):
            step(plant)
            if i % int(3600 / args.cycle) == 0:
                points.append((plant.weather(plant.time_s), plant.plc.supply_setpoint_c))
            plant.step(args.cycle)
            rooms[i] = list(plant.rooms_c().values())
            local_hour[i] = (plant.time_s / 3600.0 + params.utc_offset_h) % 24.0
    occupied = (local_hour >= 6.0) & (local_hour < 21.0)
    coldest = rooms.min(axis=1)
    per_hour = int(round(3600 / args.cycle))
    hourly = rooms[: (n // per_hour) * per_hour].reshape(-1, per_hour, len(names)).mean(axis=1)
    hour_of_day = np.arange(len(hourly)) % 24  # the season starts at local midnight
    day_index = np.arange(len(hourly)) // 24
    tiers = [0, 0, 0]
    room_days = 0
    for day in np.unique(day_index):
        mask = (day_index == day) & (hour_of_day >= 6) & (hour_of_day < 21)
        if not mask.any():
            continue
        lowest = hourly[mask].min(axis=0)
        room_days += len(names)
        tiers[0] += int(np.sum((lowest >= 16.0) & (lowest < 18.0)))
        tiers[1] += int(np.sum((lowest >= 12.0) & (lowest < 16.0)))
        tiers[2] += int(np.sum(lowest < 12.0))
    if args.misses:
        print(misses(f"{params.name}/{seed}/{key}", names, rooms, local_hour, occupied, args.cycle), flush=True)
    return Result(
        station=params.name, seed=seed, key=key,
        heat_gj=(plant.ledger.primary_in - heat0) / 1e9, area_m2=params.floor_area_m2,
        occupied_share=float(np.mean(coldest[occupied] >= 18.0)),
        hours_below_16=float(np.sum(coldest < 16.0) * args.cycle / 3600.0),
        tiers=(tiers[0], tiers[1], tiers[2]), room_days=room_days,
        min_room_c=float(rooms.min()), coldest_room=names[int(np.argmin(rooms.min(axis=0)))],
        cpu_s=time.process_time() - started,
    ), points


def season_window(args: argparse.Namespace, params: PlantParams) -> tuple[datetime, datetime]:
    """The simulated span: the station's season, or ``--days`` of it from day ``--from`` (0 = its first)."""
    start, end = heating_season(args.year, params.utc_offset_h, params.season)
    start += timedelta(days=args.from_day)
    if args.days is not None:
        end = min(end, start + timedelta(days=args.days))
    return start, end


def misses(label: str, names: list[str], rooms: np.ndarray, local_hour: np.ndarray, occupied: np.ndarray,
           cycle_s: float) -> str:
    """Where the comfort went: occupied minutes with a room below 18 C by local hour, and by the
    room that was coldest then; minutes below 16 C by hour (any time of day)."""
    minutes = cycle_s / 60.0
    coldest = rooms.min(axis=1)
    short = occupied & (coldest < ROOM_TARGET_C)
    cold = coldest < 16.0
    by_hour = {h: minutes * int(np.sum(short & (local_hour.astype(int) == h))) for h in range(24)}
    below16 = {h: minutes * int(np.sum(cold & (local_hour.astype(int) == h))) for h in range(24)}
    who = np.argmin(rooms, axis=1)
    by_room = {names[i]: minutes * int(np.sum(short & (who == i))) for i in range(len(names))}
    days = sorted({int(d) for d in np.nonzero(short)[0] * cycle_s // 86_400})
    return (f"{label} misses: < 18 C occupied min by hour "
            + ", ".join(f"{h:02d}h {m:.0f}" for h, m in by_hour.items() if m)
            + "; by room " + ", ".join(f"{r} {m:.0f}" for r, m in by_room.items() if m)
            + "; < 16 C min by hour " + ", ".join(f"{h:02d}h {m:.0f}" for h, m in below16.items() if m)
            + f"; days with a miss (from the window start) {days}")


def _run(job: tuple[Path, int, str, argparse.Namespace]) -> tuple[Result, Points]:
    result, points = run_strategy(*job)
    print(row(result), flush=True)  # as each season finishes, so a cut-short run still has its rows
    return result, points


HEADER = (
    "| station | seed | strategy | heat GJ | GJ/m² | occupied time, every room ≥ 18 °C | hours < 16 °C "
    "| room-days 16-18 / 12-16 / < 12 °C | coldest room, min °C |\n"
    "|---|---:|---|---:|---:|---:|---:|---|---|"
)


def row(r: Result) -> str:
    return (f"| {r.station} | {r.seed} | {LABELS[r.key]} | {r.heat_gj:,.0f} | {r.gj_per_m2:.3f} | "
            f"{100 * r.occupied_share:.2f} % | {r.hours_below_16:.1f} | "
            f"{r.tiers[0]} / {r.tiers[1]} / {r.tiers[2]} (of {r.room_days}) | {r.coldest_room} {r.min_room_c:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--station", type=Path, nargs="+", default=[DEMO_STATION],
                        help="station files (default: the demo, config/stations/demo-beijing.yaml)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated weather seeds (default: each file's seed and the next one)")
    parser.add_argument("--year", type=int, default=2026, help="the season starting in YEAR")
    parser.add_argument("--cycle", type=float, default=60.0, help="control cycle, simulated s")
    parser.add_argument("--strategies", default="a,b,c", help="comma-separated subset of a,b,c,a'")
    parser.add_argument("--controller", type=Path, default=ROOT / "config" / "controller.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a controller setting for (c), e.g. circuits.radiators.comfort.margin_k=0.2")
    parser.add_argument("--radiator", action="append", default=[], metavar="ROOM=FACTOR",
                        help="a changed station: ROOM's radiator capacity as a factor of its design need")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "season-{station}.png",
                        help="plot of (c)'s hourly operating points of the first station and seed, circuit 0; "
                             "with {station} in the name, one plot per station (its first seed)")
    parser.add_argument("--points", type=Path, default=None, help="also write those points as CSV")
    parser.add_argument("--from", dest="from_day", type=int, default=0,
                        help="start this many days into the season (default 0)")
    parser.add_argument("--days", type=int, default=None, help="simulate only this many days (default: to the end)")
    parser.add_argument("--misses", action="store_true",
                        help="print where each season missed 18 C (by hour, room, day) and 16 C (by hour)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    keys = [k.strip() for k in args.strategies.split(",") if k.strip()]
    seeds = {}
    for path in args.station:
        own = load_station_file(path).climate.seed
        seeds[path] = [int(x) for x in args.seeds.split(",")] if args.seeds else [own, own + 1]
    # Weather year by weather year, so a run cut short has every station on its first seed.
    jobs = [(path, seeds[path][i], key, args)
            for i in range(max(len(s) for s in seeds.values())) for path in args.station if i < len(seeds[path])
            for key in keys]
    wall = time.monotonic()
    print(f"{len(jobs)} seasons, cycle {args.cycle:g} s, {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
          + (f", radiators changed: {', '.join(args.radiator)}" if args.radiator else ""), flush=True)
    with multiprocessing.get_context("fork").Pool(min(args.jobs, len(jobs))) as pool:
        outcomes = pool.map(_run, jobs, chunksize=1)
    results = [r for r, _ in outcomes]
    print(f"\nwall {time.monotonic() - wall:.0f} s; CPU per season: "
          + ", ".join(f"{r.station}/{r.seed}/{r.key} {r.cpu_s:.0f} s" for r in results))
    print()
    print(HEADER)
    for r in results:
        print(row(r))
    plotted: set[Path] = set()
    for job, (r, points) in zip(jobs, outcomes, strict=True):
        if r.key != "c" or job[0] in plotted or (plotted and "{station}" not in str(args.png)):
            continue
        plotted.add(job[0])
        plot_points(job[0], points, args)


def plot_points(station_file: Path, points: Points, args: argparse.Namespace) -> None:
    """(c)'s hourly setpoints against circuit 0's curve (and as CSV with ``--points``)."""
    params = load_station_file(station_file)
    start, end = season_window(args, params)
    outdoor = np.array([p[0] for p in points])
    setpoint = np.array([p[1] for p in points])
    png = Path(str(args.png).replace("{station}", params.name))
    plot_curve(circuit_curve(params.name, params.circuits[0]), png, (outdoor, setpoint),
               title=f"{params.name}, {params.circuits[0].name}, {start.date()} - {end.date()}: heatgw's hourly setpoints")
    print(f"\nplot of (c)'s operating points ({params.name}): {png}")
    if args.points is not None:
        with args.points.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["outdoor_c", "setpoint_c"])
            writer.writerows(points)


if __name__ == "__main__":
    main()
