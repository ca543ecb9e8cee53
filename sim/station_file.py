"""Stations as files: a YAML description of buildings, circuits, climate, season and hydraulics.

Why the loader lives in ``sim/``: both ``heatgw sim run --station`` (``sim.cli``, which must run on
a test bench without the gateway) and ``bench/season.py`` build stations from these files, and
``sim`` imports nothing of ``gateway``, so this is the one place that reads them. It reports
problems the way the gateway's loaders do (``file:line:col: field: message``, unknown keys are
errors, duplicate keys too) with a small YAML-position walk of its own instead of
``gateway.yaml_source``.

A file says what a design office knows: each building's area, design load index, time constant
and representative rooms; each circuit's emitters, design temperatures and buildings; the city's
climate and season. The hydraulics (valve, exchanger, pump, water) are sized from the circuit's
design load (``sim.sizing``) unless the file states them. Everything else is ``sim.params``'s
defaults. ``config/stations/`` holds the shipped stations; ``demo-beijing.yaml`` is the default
station (``StationParams()``) written out.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sim.params import (
    BuildingParams,
    EmitterKind,
    EmitterParams,
    HeatExchangerParams,
    PrimaryParams,
    PumpParams,
    RoomParams,
    SecondaryParams,
    StationParams,
    ValveParams,
)
from sim.plant import CircuitParams, PlantParams
from sim.plc import PlcLimits, PlcParams
from sim.sizing import size_hydraulics
from sim.weather import Climate, SeasonDates

Positive = Annotated[float, Field(gt=0)]
_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")
_EMITTER = EmitterParams()
_PRIMARY = PrimaryParams()
FLOOR_SAFETY_LIMIT_C = 60.0
"""Floor-heating supply never above 60 degC (JGJ 142): the circuit's safety thermostat and PLC limit."""


class StationFileError(Exception):
    """Problems in one station file, each phrased as ``file:line:col: field: message``."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationInfo(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    description: str = ""
    utc_offset_h: float = 8.0
    design_indoor_c: float = 20.0


class ClimateSection(_Strict):
    """The city's design outdoor temperature (GB 50736 appendix A) and its weather model."""

    source: str = ""
    design_outdoor_c: float = Field(ge=-45, le=10)
    monthly_means_c: tuple[float, ...]
    daily_swing_k: float = Field(4.5, ge=0, le=15)
    front_std_k: float = Field(3.0, ge=0, le=10)
    seed: int = 1

    @field_validator("monthly_means_c")
    @classmethod
    def _twelve(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 12:
            raise ValueError(f"needs 12 values, January first (got {len(value)})")
        return value


class SeasonSection(_Strict):
    heating_from: str
    heating_until: str

    @field_validator("heating_from", "heating_until")
    @classmethod
    def _month_day(cls, value: str) -> str:
        _parse_month_day(value)
        return value


class PrimarySection(_Strict):
    supply_at_design_c: float = Field(_PRIMARY.supply_at_design_c, gt=40, le=150)
    supply_min_c: float = Field(_PRIMARY.supply_min_c, gt=20, le=150)
    dp_available_mpa: Positive = _PRIMARY.dp_available_mpa


class RoomSection(_Strict):
    area_share: float = Field(gt=0, le=1)
    loss_factor: Positive
    radiator_factor: Positive = 1.0


class BuildingSection(_Strict):
    note: str = ""
    floor_area_m2: Positive
    design_load_w_m2: float = Field(gt=0, le=200)
    time_constant_h: float = Field(gt=1, le=200)
    internal_gains_w_m2: float = Field(3.0, ge=0, le=20)
    flow_balance: Positive = 1.0
    rooms: dict[str, RoomSection] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares(self) -> BuildingSection:
        total = sum(r.area_share for r in self.rooms.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"rooms' area_share add up to {total:g}, not 1")
        return self


class SlabSection(_Strict):
    capacity_kj_m2k: Positive = _EMITTER.slab_capacity_j_m2k / 1000.0
    overtemperature_k: float = Field(_EMITTER.slab_overtemperature_k, gt=1, le=20)


class HydraulicsSection(_Strict):
    """Overrides of the sized equipment (``sim.sizing``); anything left out is sized."""

    valve_kvs: Positive | None = None
    exchanger_primary_kv: Positive | None = None
    pump_design_flow_m3h: Positive | None = None
    system_volume_m3: Positive | None = None
    station_volume_m3: Positive | None = None
    pipe_loss_w_per_k: float | None = Field(None, ge=0)
    litres_per_kw: Positive | None = None


class CircuitSection(_Strict):
    emitter: EmitterKind
    design_supply_c: float = Field(gt=25, le=95)
    design_return_c: float = Field(gt=20, le=90)
    exponent: float = Field(gt=1, le=2)
    buildings: tuple[str, ...] = Field(min_length=1)
    slab: SlabSection | None = None
    hydraulics: HydraulicsSection = HydraulicsSection()

    @model_validator(mode="after")
    def _consistent(self) -> CircuitSection:
        if self.design_return_c >= self.design_supply_c:
            raise ValueError("design_return_c must be below design_supply_c")
        if self.slab is not None and self.emitter is not EmitterKind.FLOOR:
            raise ValueError("slab is for floor heating only (emitter: floor)")
        if self.emitter is EmitterKind.FLOOR and self.design_supply_c > FLOOR_SAFETY_LIMIT_C:
            raise ValueError(f"floor heating is designed for at most {FLOOR_SAFETY_LIMIT_C:g} C supply (JGJ 142)")
        return self


class StationFile(_Strict):
    station: StationInfo
    climate: ClimateSection
    season: SeasonSection
    primary: PrimarySection = PrimarySection()
    buildings: dict[str, BuildingSection] = Field(min_length=1)
    circuits: dict[str, CircuitSection] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_building_once(self) -> StationFile:
        served: dict[str, str] = {}
        for name, circuit in self.circuits.items():
            for building in circuit.buildings:
                if building not in self.buildings:
                    raise ValueError(f"circuit {name} serves unknown building {building!r}")
                if building in served:
                    raise ValueError(f"building {building} is served by circuits {served[building]} and {name}")
                served[building] = name
        missing = sorted(set(self.buildings) - set(served))
        if missing:
            raise ValueError(f"no circuit serves building(s) {', '.join(missing)}")
        for name, circuit in self.circuits.items():
            if circuit.design_return_c <= self.station.design_indoor_c:
                raise ValueError(f"circuit {name}: design_return_c must be above station.design_indoor_c")
        return self


# --- to the simulator's parameters ------------------------------------------------------------

DEFAULT_LITRES_PER_KW = {EmitterKind.RADIATORS: 17.5, EmitterKind.FLOOR: 30.0}
"""Secondary water per kW of duty: radiator networks ~17.5 L/kW (the demo's 30 m3 for 1.7 MW);
floor heating holds more in its pipe coils (~30 L/kW)."""


def plant_params(doc: StationFile) -> PlantParams:
    """The simulator's parameters for a validated file: one ``StationParams`` per circuit."""
    climate = Climate(
        design_outdoor_c=doc.climate.design_outdoor_c,
        monthly_means_c=doc.climate.monthly_means_c,
        daily_amplitude_k=doc.climate.daily_swing_k,
        front_std_k=doc.climate.front_std_k,
        seed=doc.climate.seed,
    )
    season = SeasonDates(_parse_month_day(doc.season.heating_from), _parse_month_day(doc.season.heating_until))
    circuits = tuple(CircuitParams(name, _circuit_params(doc, c)) for name, c in doc.circuits.items())
    return PlantParams(name=doc.station.name, circuits=circuits, climate=climate, season=season)


def _circuit_params(doc: StationFile, c: CircuitSection) -> StationParams:
    defaults = StationParams()
    buildings = tuple(_building(name, doc.buildings[name]) for name in c.buildings)
    primary = dataclasses.replace(
        defaults.primary,
        supply_at_design_c=doc.primary.supply_at_design_c,
        supply_min_c=doc.primary.supply_min_c,
        dp_available_mpa=doc.primary.dp_available_mpa,
    )
    h = c.hydraulics
    sized = size_hydraulics(
        load_w=sum(b.floor_area_m2 * b.design_load_w_m2 for b in buildings),
        design_supply_c=c.design_supply_c,
        design_return_c=c.design_return_c,
        primary_supply_c=primary.supply_at_design_c,
        approach_k=defaults.heat_exchanger.approach_k,
        ground_c=defaults.secondary.ground_temperature_c,
        litres_per_kw=h.litres_per_kw or DEFAULT_LITRES_PER_KW[c.emitter],
    )
    floor = c.emitter is EmitterKind.FLOOR
    slab = c.slab or SlabSection()
    emitter = EmitterParams(c.emitter, slab.capacity_kj_m2k * 1000.0, slab.overtemperature_k)
    plc, plc_limits = PlcParams(), PlcLimits()
    if floor:
        plc = dataclasses.replace(plc, overtemp_limit_c=FLOOR_SAFETY_LIMIT_C)
        plc_limits = dataclasses.replace(plc_limits, supply_setpoint_c=(20.0, FLOOR_SAFETY_LIMIT_C - 5.0))
    return dataclasses.replace(
        defaults,
        design_outdoor_c=doc.climate.design_outdoor_c,
        design_indoor_c=doc.station.design_indoor_c,
        design_supply_c=c.design_supply_c,
        design_return_c=c.design_return_c,
        radiator_exponent=c.exponent,
        emitter=emitter,
        primary=primary,
        valve=ValveParams(kvs=_pick(h.valve_kvs, sized.valve_kvs)),
        heat_exchanger=HeatExchangerParams(primary_kv=_pick(h.exchanger_primary_kv, sized.exchanger_primary_kv)),
        pump=PumpParams(design_flow_m3h=_pick(h.pump_design_flow_m3h, sized.pump_design_flow_m3h)),
        secondary=SecondaryParams(
            system_volume_m3=_pick(h.system_volume_m3, sized.system_volume_m3),
            station_volume_m3=_pick(h.station_volume_m3, sized.station_volume_m3),
            pipe_loss_w_per_k=_pick(h.pipe_loss_w_per_k, sized.pipe_loss_w_per_k),
        ),
        buildings=buildings,
        plc=plc,
        plc_limits=plc_limits,
        site_utc_offset_h=doc.station.utc_offset_h,
    )


def _pick(stated: float | None, sized: float) -> float:
    return sized if stated is None else stated


def _building(name: str, b: BuildingSection) -> BuildingParams:
    return BuildingParams(
        name=name,
        floor_area_m2=b.floor_area_m2,
        design_load_w_m2=b.design_load_w_m2,
        time_constant_h=b.time_constant_h,
        rooms=tuple(RoomParams(n, r.area_share, r.loss_factor, r.radiator_factor) for n, r in b.rooms.items()),
        internal_gains_w_m2=b.internal_gains_w_m2,
        flow_balance=b.flow_balance,
    )


def _parse_month_day(text: str) -> tuple[int, int]:
    match = _MONTH_DAY.match(text)
    if match is None:
        raise ValueError(f"expected MM-DD, got {text!r}")
    month, day = int(match[1]), int(match[2])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(2000, month)[1]):  # a leap year: 02-29 exists
        raise ValueError(f"no such day {text!r}")
    return month, day


# --- reading a file ---------------------------------------------------------------------------

def load_station_file(path: Path) -> PlantParams:
    """Read, validate and convert one station file; raise ``StationFileError`` on any problem."""
    return plant_params(read_station_file(path))


def read_station_file(path: Path) -> StationFile:
    """The validated file as written, before it becomes the simulator's parameters."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StationFileError([f"{path}: cannot read file: {exc}"]) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise StationFileError([f"{path}:1:1: (document): file is empty"])
        duplicates = list(_duplicate_keys(root, (), path))
        if duplicates:
            raise StationFileError(duplicates)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise StationFileError([f"{path}:{line}:{column}: YAML syntax: {exc.problem or exc}"]) from exc
    try:
        return StationFile.model_validate(data)
    except ValidationError as exc:
        raise StationFileError([_describe(path, root, error) for error in exc.errors()]) from None


def _duplicate_keys(node: yaml.Node, path: tuple[str | int, ...], file: Path) -> Any:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                mark = key_node.start_mark
                yield f"{file}:{mark.line + 1}:{mark.column + 1}: {_dotted((*path, key))}: duplicate key"
            seen.add(key)
            yield from _duplicate_keys(value_node, (*path, key), file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index), file)


def _describe(file: Path, root: yaml.Node, error: Any) -> str:
    """One pydantic error as ``file:line:col: field: message``, located on the YAML node it is about."""
    node, path = root, []
    for part in error["loc"]:
        child = _child(node, part)
        if child is None:
            if not isinstance(part, str) or "[" in part or part.startswith("function-"):
                continue  # pydantic's bookkeeping (validator names), not a key in the file
            path.append(part)  # the missing or unknown key itself: point at its mapping
            break
        key_node, node = child
        path.append(part)
        if key_node is not None and part == error["loc"][-1]:
            node = key_node
    kind = error["type"]
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = "unknown field (check the spelling; see the station-file reference in docs/simulator/index.md)"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if isinstance(value, str | int | float | bool):
            message += f" (got {value!r})"
    mark = node.start_mark
    return f"{file}:{mark.line + 1}:{mark.column + 1}: {_dotted(tuple(path)) or '(document)'}: {message}"


def _child(node: yaml.Node, part: Any) -> tuple[yaml.Node | None, yaml.Node] | None:
    """(key node, value node) of ``part`` in a mapping, (None, item) in a sequence, else None."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                return key_node, value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
