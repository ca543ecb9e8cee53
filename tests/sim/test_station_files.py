"""Stations as files: strict loading, the shipped stations' physics, many circuits over Modbus."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from typer.testing import CliRunner

from sim.cli import app
from sim.modbus_server import StationModbusServer
from sim.params import EmitterKind, EmitterParams, StationParams
from sim.plant import Plant
from sim.registers import DEFAULT_MAP, REGISTER_MAP, ROOM_SLOTS, Block, Device, Layout, RegisterMap, build_map
from sim.sizing import size_hydraulics
from sim.station import Station
from sim.station_file import StationFileError, load_station_file
from sim.weather import ConstantProfile

STATIONS = Path(__file__).resolve().parents[2] / "config" / "stations"
DEMO = STATIONS / "demo-beijing.yaml"
MIXED = STATIONS / "mixed-shenyang.yaml"
JANUARY = datetime(2027, 1, 12, tzinfo=UTC)
WAIT_S = 5.0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


def _demo_text() -> str:
    return DEMO.read_text()


# --- the demo station, as a file -----------------------------------------------------------------

def test_the_demo_file_builds_exactly_the_default_station() -> None:
    params = load_station_file(DEMO)
    assert len(params.circuits) == 1
    assert params.circuits[0].params == StationParams()


def test_the_demo_file_runs_the_same_physics_as_the_default_station() -> None:
    plant = Plant(load_station_file(DEMO), start=JANUARY, seed=4)
    station = Station(start=JANUARY, seed=4)
    for _ in range(3):
        plant.step(1800.0)
        station.step(1800.0)
    assert plant.measurements() == station.measurements()
    assert plant.ledger == station.ledger


def test_sizing_rules_reproduce_the_demo_equipment_from_its_load() -> None:
    demo = StationParams()
    sized = size_hydraulics(1.678e6, 75.0, 50.0, 115.0, 5.0, 8.0, 17.5)
    assert (sized.valve_kvs, sized.exchanger_primary_kv) == (demo.valve.kvs, demo.heat_exchanger.primary_kv)
    assert sized.pump_design_flow_m3h == demo.pump.design_flow_m3h
    assert (sized.system_volume_m3, sized.station_volume_m3) == (30.0, 0.5)
    assert sized.pipe_loss_w_per_k == demo.secondary.pipe_loss_w_per_k


def test_a_bigger_station_gets_bigger_equipment_unless_the_file_says_otherwise(tmp_path: Path) -> None:
    bigger = _demo_text().replace("floor_area_m2: 14000", "floor_area_m2: 42000")
    sized = load_station_file(_write(tmp_path, bigger)).circuits[0].params
    assert sized.valve.kvs > StationParams().valve.kvs
    assert sized.pump.design_flow_m3h > StationParams().pump.design_flow_m3h
    stated = bigger + "    hydraulics: {valve_kvs: 40, system_volume_m3: 55}\n"
    params = load_station_file(_write(tmp_path, stated)).circuits[0].params
    assert (params.valve.kvs, params.secondary.system_volume_m3) == (40.0, 55.0)
    assert params.pump.design_flow_m3h == sized.pump.design_flow_m3h


# --- validation -----------------------------------------------------------------------------------

def _errors(path: Path) -> list[str]:
    with pytest.raises(StationFileError) as caught:
        load_station_file(path)
    return caught.value.messages


def test_an_unknown_key_is_an_error_with_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, _demo_text().replace("    time_constant_h: 50\n", "    time_constant_h: 50\n    colour: red\n"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "colour" in text)
    assert _errors(path) == [f"{path}:{line}:5: buildings.B.colour: unknown field "
                             "(check the spelling; see the station-file reference in docs/simulator/index.md)"]


def test_a_wrong_value_points_at_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _demo_text().replace("design_return_c: 50", "design_return_c: 80"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "design_return_c: 80" in text)
    [message] = _errors(path)
    assert message.startswith(f"{path}:")
    assert "circuits.radiators" in message and "design_return_c must be below design_supply_c" in message
    assert int(message.split(":")[1]) < line  # the circuit's mapping, which holds the pair


def test_a_missing_field_points_at_its_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, _demo_text().replace("    design_load_w_m2: 62\n", ""))
    [message] = _errors(path)
    assert ": buildings.A.design_load_w_m2: required field is missing" in message


def test_every_building_is_served_by_exactly_one_circuit(tmp_path: Path) -> None:
    unserved = _write(tmp_path, _demo_text().replace("buildings: [A, B, C]", "buildings: [A, B]"))
    assert "no circuit serves building(s) C" in _errors(unserved)[0]
    unknown = _write(tmp_path, _demo_text().replace("buildings: [A, B, C]", "buildings: [A, B, C, D]"))
    assert "serves unknown building 'D'" in _errors(unknown)[0]


def test_duplicate_keys_and_bad_dates_are_errors(tmp_path: Path) -> None:
    twice = _write(tmp_path, _demo_text().replace("  seed: 1\n", "  seed: 1\n  seed: 2\n"))
    [message] = _errors(twice)
    assert message.endswith(": climate.seed: duplicate key")
    bad_date = _write(tmp_path, _demo_text().replace('heating_from: "11-15"', 'heating_from: "11-31"'))
    assert "season.heating_from: no such day '11-31'" in _errors(bad_date)[0]


def test_sim_run_refuses_a_bad_station_file_with_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, _demo_text().replace("  seed: 1\n", "  seed: 1\n  sede: 2\n"))
    result = CliRunner().invoke(app, ["run", "--station", str(path)])
    assert result.exit_code == 2
    assert f"{path}:" in result.output and "climate.sede: unknown field" in result.output


# --- the shipped stations ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(STATIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_station_loads_and_runs_with_plausible_physics(path: Path) -> None:
    params = load_station_file(path)
    plant = Plant(params, start=JANUARY)
    for _ in range(12):
        plant.step(1800.0)
        for circuit in plant.circuits:
            truth = circuit.truth
            assert truth.secondary_supply_c >= truth.secondary_return_c
            assert truth.primary_supply_c > truth.primary_return_c
    ledger = plant.ledger
    assert ledger.primary_in > 0.0
    assert abs(ledger.imbalance) < 1e-9 * ledger.primary_in
    assert all(16.0 < t < 26.0 for t in plant.rooms_c().values()), plant.rooms_c()
    meter = plant.measurements().meter
    assert meter.flow_m3h == pytest.approx(sum(c.measurements().meter.flow_m3h for c in plant.circuits))
    assert meter.energy_gj == pytest.approx(sum(c.measurements().meter.energy_gj for c in plant.circuits))


def test_the_shipped_stations_cover_the_cities_and_circuits_asked_for() -> None:
    stations = {p.stem: load_station_file(p) for p in STATIONS.glob("*.yaml")}
    designs = sorted(s.climate.design_outdoor_c for s in stations.values())
    assert designs[0] <= -24.0 and any(-6.0 <= d <= -4.0 for d in designs)
    mixed = stations["mixed-shenyang"]
    assert len([b for c in mixed.circuits for b in c.params.buildings]) >= 5
    assert {c.params.emitter.kind for c in mixed.circuits} == {EmitterKind.RADIATORS, EmitterKind.FLOOR}


def test_floor_heating_answers_a_setpoint_step_slower_than_radiators() -> None:
    """The same buildings behind radiators (75/50) and floor heating (45/35): a +5 K step."""
    radiators = StationParams()
    floor = dataclasses.replace(radiators, design_supply_c=45.0, design_return_c=35.0, radiator_exponent=1.1,
                                emitter=EmitterParams(EmitterKind.FLOOR))
    shares = []
    for params in (radiators, floor):
        station = Station(params, start=JANUARY, seed=1, weather=ConstantProfile(-5.0))
        before = station.truth.rooms_c["B-1"]
        station.plc.supply_setpoint_c += 5.0
        station.step(3600.0)
        after_1h = station.truth.rooms_c["B-1"] - before
        station.step(11 * 3600.0)
        after_12h = station.truth.rooms_c["B-1"] - before
        assert after_12h > 0.3
        shares.append(after_1h / after_12h)
    assert shares[1] < 0.5 * shares[0], shares


# --- the register map grows with the station --------------------------------------------------------

def test_the_one_circuit_map_is_the_demo_map() -> None:
    assert build_map(Layout()) == REGISTER_MAP
    assert RegisterMap(Layout(circuits=1, rooms=6)).table == REGISTER_MAP


def test_circuits_and_rooms_add_rows_without_moving_or_overlapping_any() -> None:
    big = RegisterMap(Layout(circuits=4, rooms=60))
    for row in REGISTER_MAP:
        if not row.name.startswith("room_"):
            assert big.lookup(row.device, row.block, row.address) == row
    seen: set[tuple[Device, Block, int]] = set()
    for row in big.table:
        for address in row.addresses:
            assert (row.device, row.block, address) not in seen, row.name
            seen.add((row.device, row.block, address))
    assert big.lookup(Device.PLC, Block.INPUT, 20 + 2 * 59).name == "room_59_temperature"
    assert big.lookup(Device.PLC, Block.HOLDING, 130).name == "c3_supply_setpoint"
    assert big.lookup(Device.PLC, Block.INPUT, 1047).name == "c3_secondary_supply_temperature"
    assert len(DEFAULT_MAP.rows(Device.PLC, Block.INPUT)) == 19 + 2 * ROOM_SLOTS


async def test_a_two_circuit_station_serves_each_circuit_and_takes_each_setpoint() -> None:
    plant = Plant(load_station_file(MIXED), start=JANUARY)
    plant.step(600.0)
    server = StationModbusServer(plant, port=0, register_map=RegisterMap(plant.layout))
    async with server:
        modbus = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1.0, retries=0)
        assert await asyncio.wait_for(modbus.connect(), WAIT_S)
        try:
            assert not (await modbus.write_register(100, 700, device_id=1)).isError()  # radiators 70.0 C
            assert not (await modbus.write_register(110, 400, device_id=1)).isError()  # floor 40.0 C
            refused = await modbus.write_register(110, 700, device_id=1)  # above the floor circuit's 55 C
            radiators = (await modbus.read_holding_registers(100, count=7, device_id=1)).registers
            floor_holding = (await modbus.read_holding_registers(110, count=7, device_id=1)).registers
            floor_inputs = (await modbus.read_input_registers(1000, count=12, device_id=1)).registers
            rooms = (await modbus.read_input_registers(20, count=24, device_id=1)).registers
        finally:
            modbus.close()
    assert (radiators[0], floor_holding[0]) == (700, 400)
    assert refused.isError() and refused.exception_code == 3
    assert (plant.plcs[0].supply_setpoint_c, plant.plcs[1].supply_setpoint_c) == (70.0, 40.0)
    floor = plant.circuits[1].measurements()
    assert floor_inputs[7] == round(floor.secondary_supply_c * 10)
    assert floor_inputs[11] == round(floor.secondary_flow_m3h * 10)
    temperatures = [r.temperature_c for r in plant.measurements().rooms]
    assert len(temperatures) == 12 and rooms[22] == round(temperatures[11] * 10)


def test_faults_go_to_the_circuit_they_belong_to() -> None:
    plant = Plant(load_station_file(MIXED), start=JANUARY)
    plant.faults.sensor_open("M5-1")  # a floor-heating room
    plant.faults.pump_trip(circuit=1)
    plant.faults.sensor_open("outdoor")
    assert plant.faults.active() == {"outdoor": {"sensor": "open"}, "c1.M5-1": {"sensor": "open"},
                                     "c1.outdoor": {"sensor": "open"}, "c1.pump_trip": True}
    plant.step(60.0)
    assert not plant.circuits[1].measurements().pump_running and plant.circuits[0].measurements().pump_running
    plant.faults.clear("M5-1")
    plant.faults.clear("c1.pump_trip")
    plant.faults.clear("outdoor")
    assert plant.faults.active() == {}
