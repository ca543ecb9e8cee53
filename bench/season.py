"""Whole heating season in the simulator, three control strategies side by side (not run in CI).

Run: ``.venv/bin/python bench/season.py`` (about 5 min on 2 cores; ``--help`` for options).

Strategies, all on the same station, the same seeded weather and the same start state, each
writing the PLC's supply setpoint every ``--cycle`` seconds (rounded to the register's 0.1 K,
clamped to the station file's writable range 30-90 C):

* (a) the fixed design curve: the filed curve ``config/curves/radiators-75-50.yaml`` read at the
  measured outdoor temperature, nothing else;
* (b) Danfoss-ECL style: the same curve shifted by a proportional room influence,
  ``2.5 x curve slope x (18 C - coldest valid room)``, no integral (the domain brief's ECL
  figure), no setback;
* (c) heatgw: ``gateway.control.Controller`` with ``config/controller.yaml``, driven through the
  same ``SimLoop`` the closed-loop tests use (instruments as the gateway sees them: rooms every
  5-15 min, 0.1 K, some reports lost);
* (a') for reference only: the station's GB 50736 design curve (75/50 C for 20 C rooms, the
  curve the simulated PLC powers up with), read the same way as (a).

Comfort is judged on the TRUE room temperatures (``station.truth``), not on what the sensors
said, at every cycle: occupied hours are 06:00-21:00 site time (UTC+8). A room-day's refund tier
uses that room's lowest hourly mean during the occupied hours of that day (Zibo rule tiers:
16-18 C: 20 %, 12-16 C: 50 %, < 12 C: 100 %). Heat is what the primary side gave up in the
exchanger (the simulator's energy ledger; the heat meter reads the same within its probes'
rounding).

``--radiator ROOM=FACTOR`` runs every strategy on a changed station instead, e.g.
``--radiator A-top-corner=1.0`` for A's corner room with its radiator replaced by a correctly
sized one: what a station change, not a controller, would be worth.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.control.controller import Controller  # noqa: E402
from gateway.control.curve_cli import plot_curve  # noqa: E402
from gateway.control.harness import SimLoop  # noqa: E402
from gateway.control.loader import (  # noqa: E402
    ControllerConfig,
    ControllerFile,
    load_controller_config,
    resolve_curves,
)
from gateway.curves import Curve, PhysicalCurve, load_curve  # noqa: E402
from sim.params import StationParams  # noqa: E402
from sim.station import Station  # noqa: E402
from sim.weather import heating_season  # noqa: E402

WRITE_RANGE_C = (30.0, 90.0)
ECL_INFLUENCE = 2.5
ROOM_TARGET_C = 18.0
ROOM_MAX_AGE_S = 1800.0
LABELS = {
    "a": "(a) fixed design curve",
    "b": "(b) ECL-style, room influence",
    "c": "(c) heatgw controller",
    "a'": "(a') GB 50736 curve, 20 C rooms (reference)",
}


@dataclass(frozen=True)
class Result:
    """One strategy's season."""

    key: str
    heat_gj: float
    area_m2: float
    occupied_share: float  # share of occupied time with every room >= 18 C
    hours_below_16: float
    tiers: tuple[int, int, int]  # room-days 16-18, 12-16, < 12
    room_days: int
    mean_rooms_c: tuple[float, ...]
    min_room_c: float
    cpu_s: float

    @property
    def gj_per_m2(self) -> float:
        return self.heat_gj / self.area_m2


def _register(value: float) -> float:
    return round(value, 1)


def _clamp(value: float) -> float:
    return min(WRITE_RANGE_C[1], max(WRITE_RANGE_C[0], value))


def curve_strategy(curve: Curve) -> Callable[[Station], None]:
    """(a): the curve at the measured outdoor temperature."""
    def step(station: Station) -> None:
        m = station.measurements()
        station.plc.supply_setpoint_c = _register(_clamp(float(curve.supply_at(_register(m.outdoor_c)))))
    return step


def ecl_strategy(curve: Curve) -> Callable[[Station], None]:
    """(b): the curve plus 2.5 x slope x (target - coldest valid room), proportional only."""
    def step(station: Station) -> None:
        m = station.measurements()
        outdoor = _register(m.outdoor_c)
        rooms = [r.temperature_c for r in m.rooms if r.temperature_c is not None and r.age_s <= ROOM_MAX_AGE_S]
        value = float(curve.supply_at(outdoor))
        if rooms:
            slope = float(curve.supply_at(outdoor - 0.5) - curve.supply_at(outdoor + 0.5))
            value += ECL_INFLUENCE * slope * (ROOM_TARGET_C - min(rooms))
        station.plc.supply_setpoint_c = _register(_clamp(value))
    return step


def design_curve(station: Station) -> Curve:
    """The station's own design curve (the one its PLC powers up with), as a curve file would state it."""
    p = station.params
    return Curve(name="station-design", version=1, author="sim.params", date=datetime(2026, 10, 1).date(),
                 room_c=p.design_indoor_c, min_supply_c=WRITE_RANGE_C[0], max_supply_c=85.0,
                 physical=PhysicalCurve(design_room_c=p.design_indoor_c, design_outdoor_c=p.design_outdoor_c,
                                        design_supply_c=p.design_supply_c, design_return_c=p.design_return_c,
                                        exponent=p.radiator_exponent))


def station_params(radiators: list[str]) -> StationParams:
    """The demo station, with ``ROOM=FACTOR`` radiator changes (``A-top-corner=1.0``)."""
    params = StationParams()
    factors = {}
    for item in radiators:
        room, _, factor = item.partition("=")
        factors[room] = float(factor)
    buildings = tuple(
        replace(b, rooms=tuple(replace(r, radiator_factor=factors.pop(f"{b.name}-{r.name}", r.radiator_factor))
                               for r in b.rooms))
        for b in params.buildings)
    if factors:
        raise SystemExit(f"--radiator: no such room {', '.join(factors)}")
    return replace(params, buildings=buildings)


def run_strategy(key: str, args: argparse.Namespace) -> tuple[Result, list[tuple[float, float]]]:
    """Simulate the season under one strategy; returns the result and hourly (outdoor, setpoint) points."""
    started = time.process_time()
    start, end = heating_season(args.year)
    station = Station(station_params(args.radiator), start=start.astimezone(UTC), seed=args.seed)
    names = station.room_names
    curve = load_curve(args.curve)
    loop: SimLoop | None = None
    step: Callable[[Station], None] | None = None
    if key == "c":
        config = controller_config(args.controller, args.set)
        loop = SimLoop(station, Controller(config, ZoneInfo("Asia/Shanghai")), "radiators", cycle_s=args.cycle)
    elif key == "b":
        step = ecl_strategy(curve)
    else:
        step = curve_strategy(curve if key == "a" else design_curve(station))
    heat0 = station.ledger.primary_in
    offset_h = station.params.site_utc_offset_h
    n = int(round((end - start).total_seconds() / args.cycle))
    rooms = np.empty((n, len(names)))
    local_hour = np.empty(n)
    points: list[tuple[float, float]] = []
    for i in range(n):
        if loop is not None:
            loop.cycle()
        else:
            assert step is not None
            step(station)
        if i % int(3600 / args.cycle) == 0:
            points.append((station.weather(station.time_s), station.plc.supply_setpoint_c))
        station.step(args.cycle)
        rooms[i] = list(station.truth.rooms_c.values())
        local_hour[i] = (station.time_s / 3600.0 + offset_h) % 24.0
    heat_gj = (station.ledger.primary_in - heat0) / 1e9
    area = sum(b.floor_area_m2 for b in station.params.buildings)
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
    result = Result(
        key=key, heat_gj=heat_gj, area_m2=area,
        occupied_share=float(np.mean(coldest[occupied] >= 18.0)),
        hours_below_16=float(np.sum(coldest < 16.0) * args.cycle / 3600.0),
        tiers=(tiers[0], tiers[1], tiers[2]), room_days=room_days,
        mean_rooms_c=tuple(float(x) for x in rooms.mean(axis=0)), min_room_c=float(rooms.min()),
        cpu_s=time.process_time() - started,
    )
    return result, points


def controller_config(path: Path, overrides: list[str]) -> ControllerConfig:
    """The controller file, with ``--set dotted.key=yaml-value`` overrides for sensitivity runs."""
    if not overrides:
        return load_controller_config(path)
    data = yaml.safe_load(path.read_text())
    for override in overrides:
        key, _, value = override.partition("=")
        node = data["controller"]
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    return resolve_curves(ControllerFile.model_validate(data).controller, path.parent, path)


def _run(job: tuple[str, argparse.Namespace]) -> tuple[Result, list[tuple[float, float]]]:
    return run_strategy(*job)


def table(results: dict[str, Result], names: tuple[str, ...]) -> str:
    """The comparison as a Markdown table, with (c)'s savings against (a) and (b)."""
    lines = [
        "| strategy | heat GJ | GJ/m² | occupied time, every room ≥ 18 °C | hours < 16 °C | room-days 16-18 / 12-16 / < 12 °C | mean room °C (" + ", ".join(names) + ") |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for key, r in results.items():
        lines.append(
            f"| {LABELS[key]} | {r.heat_gj:,.0f} | {r.gj_per_m2:.3f} | {100 * r.occupied_share:.2f} % | "
            f"{r.hours_below_16:.1f} | {r.tiers[0]} / {r.tiers[1]} / {r.tiers[2]} (of {r.room_days}) | "
            + ", ".join(f"{t:.1f}" for t in r.mean_rooms_c) + " |")
    c = results.get("c")
    if c is not None:
        lines.append("")
        for key in ("a", "b", "a'"):
            if key in results:
                saving = 1.0 - c.heat_gj / results[key].heat_gj
                lines.append(f"(c) uses {100 * saving:.1f} % less heat than {LABELS[key]}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--year", type=int, default=2026, help="season 15 Nov YEAR - 15 Mar YEAR+1")
    parser.add_argument("--seed", type=int, default=1, help="weather and room-sensor seed (same for all)")
    parser.add_argument("--cycle", type=float, default=60.0, help="control cycle, simulated s")
    parser.add_argument("--strategies", default="a,b,c,a'", help="comma-separated subset of a,b,c,a'")
    parser.add_argument("--curve", type=Path, default=ROOT / "config" / "curves" / "radiators-75-50.yaml")
    parser.add_argument("--controller", type=Path, default=ROOT / "config" / "controller.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a controller setting for (c), e.g. circuits.radiators.comfort.margin_k=0.2")
    parser.add_argument("--radiator", action="append", default=[], metavar="ROOM=FACTOR",
                        help="a changed station: ROOM's radiator capacity as a factor of its design need, "
                             "e.g. A-top-corner=1.0 (shipped 0.92)")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "season-operating-points.png")
    parser.add_argument("--points", type=Path, default=None, help="also write (c)'s hourly operating points as CSV")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    keys = [k.strip() for k in args.strategies.split(",") if k.strip()]
    wall = time.monotonic()
    with multiprocessing.get_context("fork").Pool(min(args.jobs, len(keys))) as pool:
        outcomes = pool.map(_run, [(key, args) for key in keys])
    results = {r.key: r for r, _ in outcomes}
    points = {r.key: p for r, p in outcomes}
    start, end = heating_season(args.year)
    names = Station(station_params(args.radiator), start=start.astimezone(UTC), seed=args.seed).room_names
    print(f"season {start.date()} - {end.date()} (site UTC+8), seed {args.seed}, cycle {args.cycle:g} s, "
          f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          + (f"radiators changed: {', '.join(args.radiator)}, " if args.radiator else "")
          + f"wall {time.monotonic() - wall:.0f} s (CPU per strategy: "
          + ", ".join(f"{k} {r.cpu_s:.0f} s" for k, r in results.items()) + ")")
    print()
    print(table(results, names))
    if "c" in points:
        outdoor = np.array([p[0] for p in points["c"]])
        setpoint = np.array([p[1] for p in points["c"]])
        curve = load_curve(args.curve)
        plot_curve(curve, args.png, (outdoor, setpoint),
                   title=f"heatgw season {start.date()} - {end.date()}: setpoints written (hourly) vs the filed curve")
        print(f"\nplot of (c)'s operating points: {args.png.relative_to(ROOT) if args.png.is_relative_to(ROOT) else args.png}")
        if args.points is not None:
            with args.points.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["outdoor_c", "setpoint_c"])
                writer.writerows(points["c"])


if __name__ == "__main__":
    main()
