"""Faults on a severe-cold station: does any room fall below 16 C, and does the state say why (not run in CI).

Run: ``.venv/bin/python bench/stress.py`` (the scenarios one after another, about a minute each
on a quiet core; ``--help`` for options).

The station is ``tests/control/severe.py``'s: design outdoor -24 C, three buildings that cool fast
(A's top-floor corner room twice its building's loss per m2, behind an undersized radiator), 10 %
of room reports lost, the shipped controller with the site's -24 C curve and outdoor default. The
weather is its coldest week (mean ``--mean`` C, 5 K daily half-swing, passing fronts). Each
scenario runs the same week from the same start, with one fault:

* ``none``: the week as it is;
* ``outdoor-frozen``: the outdoor sensor jumps to ``--frozen`` C and sticks there for 3 days;
* ``rooms-silent``: every room sensor stops reporting for 2 days, from 22:00 of the second night;
* ``primary-lost``: the network stops delivering for 6 hours, from 01:00 of the third night.

Comfort is judged on the true room temperatures at every cycle (occupied = 06:00-21:00), and the
published controller state is counted: where the outdoor value came from, the signals raised and
the phases, so the fallback each fault caused is visible.

``--station FILE`` runs the same faults on a shipped station file instead (e.g.
``config/stations/severe-cold-harbin.yaml``): its own buildings and weather (``--seed``, default
the file's), in the coldest ``--days`` of its season, with the controller exactly as
``bench/season.py`` runs (c) on it; and every scenario also under (a), the fixed design curve,
so what the physics allows in each row is beside what the controller made of it.

The primary loss also runs under (m), the upper bound: every circuit's supply held at its
maximum (the controller's own limit, the curve's ``max_supply_c``) for the whole week, before
and after the outage. It is no strategy anyone would run (it overheats every room all week); it
is what the emitters can do at most, so its hours below 16 C are what no controller can avoid.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from season import controller_config, make_strategy  # noqa: E402

from tooling.harness import SimLoop  # noqa: E402
from gateway.control.model import ControllerDecision  # noqa: E402
from sim.plant import Plant  # noqa: E402
from sim.station import Station  # noqa: E402
from sim.station_file import load_station_file  # noqa: E402
from sim.weather import heating_season  # noqa: E402
from tests.control.severe import severe_controller, severe_station  # noqa: E402

DAY = 86_400.0
HOUR = 3_600.0
START = datetime(2027, 1, 10, 16, 0, tzinfo=UTC)  # 00:00 at the site (UTC+8)
Fault = tuple[float, Callable[[Any], None], float, Callable[[Any], None]]  # at, inject, until, clear (Station or Plant)


def _silence(station: Station | Plant) -> None:
    for room in station.room_names:
        station.faults.sensor_silent(room)


def _speak(station: Station | Plant) -> None:
    for room in station.room_names:
        station.faults.clear(room)


def scenarios(frozen_c: float) -> dict[str, Fault | None]:
    return {
        "none": None,
        "outdoor-frozen": (DAY, lambda s: s.faults.freeze("outdoor", frozen_c), 4 * DAY,
                           lambda s: s.faults.clear("outdoor")),
        "rooms-silent": (DAY + 22 * HOUR, _silence, 3 * DAY + 22 * HOUR, _speak),
        "primary-lost": (2 * DAY + HOUR, lambda s: s.faults.primary_loss(), 2 * DAY + 7 * HOUR,
                         lambda s: s.faults.clear("primary_loss")),
    }


@dataclass(frozen=True)
class Row:
    name: str
    strategy: str
    heat_gj: float
    occupied_share: float
    hours_below_16: float
    min_room_c: float
    coldest_room: str
    outdoor_sources: dict[str, float]  # hours per source
    signals: dict[str, float]  # hours each signal was raised
    phases: dict[str, float]  # hours per phase
    cpu_s: float


def coldest_start(path: Path, seed: int, days: float, year: int = 2026) -> datetime:
    """The site's local midnight that begins the coldest ``days`` of the station's season (hourly means)."""
    params = load_station_file(path)
    start, end = heating_season(year, params.utc_offset_h, params.season)
    weather = Plant(params, start=start.astimezone(UTC), seed=seed).weather
    t0 = start.timestamp()
    hours = np.arange(0.0, (end - start).total_seconds(), HOUR)
    outdoor = np.array([weather(t0 + h) for h in hours])
    window = int(days * 24)
    means = np.convolve(outdoor, np.ones(window) / window, mode="valid")[::24]  # one per local midnight
    return datetime.fromtimestamp(t0 + int(np.argmin(means)) * DAY, UTC)


BOUND = "m"
"""The upper-bound reference: the supply at the controller's maximum all week (see the module doc)."""


def max_heat(circuits: list[Station], maxima: list[float]) -> Callable[[], None]:
    """(m): each circuit's PLC setpoint at its maximum allowed supply, every cycle."""
    def hold() -> None:
        for station, maximum in zip(circuits, maxima, strict=True):
            station.plc.supply_setpoint_c = maximum
    return hold


def run(name: str, args: argparse.Namespace, strategy: str = "c") -> Row:
    """One scenario: the severe test station under (c) or (m), or ``--station`` under ``strategy``."""
    started = time.process_time()
    fault = scenarios(args.frozen)[name]
    decide: Callable[[], ControllerDecision | None]
    if args.station is None:
        station: Station | Plant = severe_station(START, seed=args.seed, mean_c=args.mean)
        control = severe_controller()
        decide = (max_heat([station], [curve.max_supply_c for curve in control.config.curves.values()])
                  if strategy == BOUND else SimLoop(station, control, "radiators").cycle)
    else:
        params = load_station_file(args.station)
        plant = Plant(params, start=args.start, seed=args.seed)
        station = plant
        if strategy == BOUND:
            config = controller_config(args.controller, params, Path(args.curve_dir), args.set)
            decide = max_heat(list(plant.circuits), [config.curves[c.name].max_supply_c for c in params.circuits])
        else:
            step = make_strategy(strategy, params, args, Path(args.curve_dir))

            def decide() -> ControllerDecision | None:
                return step(plant)
    heat0 = station.ledger.primary_in
    sources: collections.Counter[str] = collections.Counter()
    signals: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[str] = collections.Counter()
    coldest, occupied, who = [], [], []
    cycle = 60.0
    for i in range(int(args.days * DAY / cycle)):
        t = i * cycle
        if fault is not None and t == fault[0]:
            fault[1](station)
        if fault is not None and t == fault[2]:
            fault[3](station)
        decision = decide()
        station.step(cycle)
        if decision is not None:
            state = decision.state
            sources[state.outdoor_source.value] += 1
            signals.update(signal.value for signal in state.signals)
            phases.update({c.phase for c in state.circuits})
        rooms = station.truth.rooms_c if isinstance(station, Station) else station.rooms_c()
        name_min = min(rooms, key=rooms.__getitem__)
        coldest.append(rooms[name_min])
        who.append(name_min)
        offset = station.params.site_utc_offset_h if isinstance(station, Station) else station.params.utc_offset_h
        hour = (station.time_s / HOUR + offset) % 24.0
        occupied.append(6.0 <= hour < 21.0)
    c, occ = np.array(coldest), np.array(occupied)
    per_h = cycle / HOUR
    return Row(name, strategy, (station.ledger.primary_in - heat0) / 1e9, float(np.mean(c[occ] >= 18.0)),
               float(np.sum(c < 16.0) * per_h), float(c.min()), who[int(np.argmin(c))],
               {k: v * per_h for k, v in sources.items()}, {k: v * per_h for k, v in signals.items()},
               {k: v * per_h for k, v in phases.items()}, time.process_time() - started)


def _strategies(scenario: str, compared: tuple[str, ...]) -> tuple[str, ...]:
    """The strategies a scenario runs under: the upper bound joins where a fault of the heat
    source, not of the controller, takes the rooms down (the primary loss)."""
    return (*compared, BOUND) if scenario == "primary-lost" else compared


def _hours(counts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mean", type=float, default=-21.0, help="the week's mean outdoor temperature, C")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--frozen", type=float, default=-5.0, help="the value the outdoor sensor sticks at")
    parser.add_argument("--scenarios", default=",".join(scenarios(0.0)))
    parser.add_argument("--station", type=Path, default=None,
                        help="a station file instead of the severe test station (its coldest --days)")
    parser.add_argument("--controller", type=Path, default=ROOT / "config" / "controller.yaml")
    args = parser.parse_args()
    args.set, args.year = [], 2026
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    wall = time.monotonic()
    if args.station is None:
        rows = [run(name, args, key) for name in names for key in _strategies(name, ("c",))]  # one at a time
        where = f"severe station, {args.days:g} days from {START.date()} (site UTC+8), mean {args.mean:g} C"
    else:
        seed = args.seed if "--seed" in sys.argv else load_station_file(args.station).climate.seed
        args.seed, args.start = seed, coldest_start(args.station, seed, args.days)
        with tempfile.TemporaryDirectory() as curve_dir:
            args.curve_dir = curve_dir
            rows = [run(name, args, key) for name in names for key in _strategies(name, ("c", "a"))]
        where = f"{args.station.stem}, its coldest {args.days:g} days from {args.start:%Y-%m-%d %H:%M} UTC"
    print(f"{where}, seed {args.seed}, {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"wall {time.monotonic() - wall:.0f} s (CPU: " + ", ".join(f"{r.name}/{r.strategy} {r.cpu_s:.0f} s" for r in rows)
          + ")")
    print()
    print("| scenario | strategy | heat GJ | occupied time, every room ≥ 18 °C | hours < 16 °C | coldest room (°C) | "
          "outdoor source, h | signals raised, h | phases, h |")
    print("|---|---|---:|---:|---:|---|---|---|---|")
    for r in rows:
        label = {"c": "(c) heatgw", "a": "(a) fixed curve", BOUND: "(m) maximum heat, all week"}[r.strategy]
        print(f"| {r.name} | {label} | {r.heat_gj:,.0f} | {100 * r.occupied_share:.2f} % | {r.hours_below_16:.1f} | "
              f"{r.coldest_room} {r.min_room_c:.2f} | {_hours(r.outdoor_sources)} | {_hours(r.signals)} | "
              f"{_hours(r.phases)} |")


if __name__ == "__main__":
    main()
