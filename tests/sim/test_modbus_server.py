"""The station's Modbus server over real loopback sockets, with a pymodbus client.

A small fake station with fixed, awkward values (negative outdoor temperature, a room that never
reported, an age past 65535 s, a BCD-friendly energy counter) makes every register checkable to
the last digit; the real physics is exercised in test_runner.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from sim.modbus_server import CommFaults, ExceptionRange, StationModbusServer
from sim.plc import PlcLimits, ValveMode
from sim.readings import Measurements, MeterReading, RoomReading
from sim.registers import Block, Device, WordOrder, decode, encode_value, lookup, rows

WAIT_S = 5.0  # upper bound for anything that should be quick


@dataclass
class FakePlc:
    supply_setpoint_c: float = 60.0
    pump_frequency_setpoint_hz: float = 40.0
    pump_run_command: bool = True
    makeup_auto: bool = True
    valve_mode: ValveMode = ValveMode.AUTO
    manual_valve_pct: float = 0.0
    pi_gain_pct_per_k: float = 2.5
    pi_integral_s: float = 120.0
    valve_stroke_s: float = 60.0
    limits: PlcLimits = PlcLimits(pump_frequency_setpoint_hz=(25.0, 50.0))
    resets: int = 0

    def reset_alarms(self) -> None:
        self.resets += 1


@dataclass
class FakeFaults:
    """Records injected faults, with the shape of ``sim.faults.Faults``."""

    injected: dict[str, object] = field(default_factory=dict)

    def sensor_open(self, sensor: str) -> None:
        self.injected[sensor] = {"sensor": "open"}

    def pump_trip(self) -> str:
        self.injected["pump_trip"] = True
        return "pump tripped"

    def active(self) -> dict[str, object]:
        return dict(self.injected)

    def clear(self, name: str | None = None) -> None:
        if name is None:
            self.injected.clear()
        else:
            del self.injected[name]


ROOMS = (
    RoomReading("r1", "b1", 21.4, 30.0),
    RoomReading("r2", "b1", None, 1e6),  # never reported, age far past the register's range
    RoomReading("r3", "b2", -1.5, 0.0),
)
METER = MeterReading(
    flow_m3h=12.5, power_kw=430.25, supply_c=95.5, return_c=55.25, energy_gj=44.444,
    energy_kwh=12345678.9, volume_m3=8765.5, status=2,
)


@dataclass
class FakeStation:
    """Valve in AUTO walks toward the position that makes ``supply = 30 + 0.5 * valve``."""

    now: datetime = datetime(2026, 1, 10, tzinfo=UTC)
    plc: FakePlc = field(default_factory=FakePlc)
    faults: FakeFaults = field(default_factory=FakeFaults)
    valve_pct: float = 60.0

    def step(self, dt_s: float) -> None:
        self.now += timedelta(seconds=dt_s)
        if self.plc.valve_mode is ValveMode.MANUAL:
            target = self.plc.manual_valve_pct
        else:
            target = min(max((self.plc.supply_setpoint_c - 30.0) / 0.5, 0.0), 100.0)
        travel = 100.0 * dt_s / self.plc.valve_stroke_s
        self.valve_pct += max(min(target - self.valve_pct, travel), -travel)

    def measurements(self) -> Measurements:
        return Measurements(
            timestamp=self.now.timestamp(), outdoor_c=-12.3, primary_supply_c=110.0, primary_return_c=60.1,
            primary_supply_mpa=1.234, primary_return_mpa=0.456, primary_flow_m3h=12.5,
            valve_pct=self.valve_pct, secondary_supply_c=30.0 + 0.5 * self.valve_pct, secondary_return_c=45.2,
            secondary_supply_mpa=0.6, secondary_return_mpa=0.35, secondary_flow_m3h=40.2,
            pump_frequency_hz=self.plc.pump_frequency_setpoint_hz if self.plc.pump_run_command else 0.0,
            pump_running=self.plc.pump_run_command, pump_fault=False, makeup_pump_running=True,
            makeup_pump_fault=False, makeup_flow_m3h=0.37, makeup_total_m3=70000.123, tank_level_pct=81.5,
            pit_flooded=False, overtemp_trip=True, overpressure_trip=False, primary_supply_lost=True,
            rooms=ROOMS, meter=METER,
        )


@asynccontextmanager
async def serving(
    station: FakeStation | None = None, *, meter_port: int | None = None, word_order: WordOrder = "big"
) -> AsyncIterator[StationModbusServer]:
    server = StationModbusServer(station or FakeStation(), port=0, meter_port=meter_port, meter_word_order=word_order)
    async with server:
        yield server


@asynccontextmanager
async def client(port: int, timeout: float = 1.0) -> AsyncIterator[AsyncModbusTcpClient]:
    modbus = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0, reconnect_delay=0)
    assert await asyncio.wait_for(modbus.connect(), WAIT_S)
    try:
        yield modbus
    finally:
        modbus.close()


def engineering(device: Device, block: Block, words: list[int], word_order: WordOrder = "big") -> dict[str, float]:
    """Decode a block read from address 0 of ``block`` (or 100 for PLC holding) into named values."""
    table = rows(device, block)
    base = table[0].address
    return {row.name: decode(row, words[row.address - base: row.address - base + row.words], word_order)
            for row in table}


async def test_whole_plc_map_reads_back_the_measurements() -> None:
    async with serving() as server, client(server.port) as modbus:
        ir = await modbus.read_input_registers(0, count=60, device_id=1)
        hr = await modbus.read_holding_registers(100, count=7, device_id=1)
        coils = await modbus.read_coils(0, count=3, device_id=1)
        inputs = await modbus.read_discrete_inputs(0, count=8, device_id=1)
    values = engineering(Device.PLC, Block.INPUT, ir.registers)
    assert values["outdoor_temperature"] == -12.3
    assert ir.registers[0] == 0x10000 - 123  # int16 on the wire
    assert values["primary_supply_pressure"] == 1.234
    assert values["makeup_flow"] == 0.37
    assert values["makeup_total"] == 70000.123
    assert ir.registers[14:16] == [70000123 >> 16, 70000123 & 0xFFFF]  # high word first
    assert values["valve_position"] == 60.0
    assert values["secondary_supply_temperature"] == 60.0
    assert values["tank_level"] == 81.5
    assert ir.registers[17] == 0b1010_0101  # pump running, make-up running, over-temp, primary lost
    assert ir.registers[18:20] == [0, 0]
    assert values["room_0_temperature"] == 21.4 and values["room_0_age"] == 30
    assert ir.registers[22:24] == [32767, 65535]  # no reading yet, age saturated
    assert values["room_2_temperature"] == -1.5
    assert ir.registers[26:60] == [32767, 65535] * 17  # empty room slots

    assert engineering(Device.PLC, Block.HOLDING, hr.registers) == {
        "supply_setpoint": 60.0, "pump_frequency_setpoint": 40.0, "valve_mode": 0, "manual_valve_position": 0,
        "pi_gain": 2.5, "pi_integral_time": 120, "valve_stroke_time": 60,
    }
    assert coils.bits[:3] == [True, True, False]
    assert inputs.bits[:8] == [True, False, True, False, False, True, False, True]


@pytest.mark.parametrize("word_order", ["big", "little"])
async def test_meter_on_its_own_port_in_either_word_order(word_order: WordOrder) -> None:
    async with serving(meter_port=0, word_order=word_order) as server:
        assert server.meter_port != server.port
        async with client(server.meter_port) as modbus:
            hr = await modbus.read_holding_registers(0, count=17, device_id=2)
        async with client(server.port) as modbus:
            elsewhere = await modbus.read_holding_registers(0, count=2, device_id=2)
    values = engineering(Device.METER, Block.HOLDING, hr.registers, word_order)
    assert values["flow"] == 12.5 and values["power"] == 430.25 and values["return_temperature"] == 55.25
    assert values["energy_gj"] == pytest.approx(44.444, rel=1e-6)
    assert values["energy_kwh"] == 12345678
    low_first = hr.registers[12:14] if word_order == "little" else hr.registers[13:11:-1]
    assert low_first == [12345678 & 0xFFFF, 12345678 >> 16]
    assert hr.registers[14:16] == [0x1234, 0x5678]  # BCD is high word first in both orders
    assert hr.registers[16] == 2
    assert elsewhere.exception_code == 0x0B  # the PLC's port has no unit 2 behind it


async def test_meter_shares_the_plc_port_by_default() -> None:
    async with serving() as server, client(server.port) as modbus:
        assert server.meter_port == server.port
        hr = await modbus.read_holding_registers(0, count=17, device_id=2)
    assert engineering(Device.METER, Block.HOLDING, hr.registers)["supply_temperature"] == 95.5


async def test_setpoint_write_reaches_the_plc_and_moves_the_valve() -> None:
    station = FakeStation()
    async with serving(station) as server, client(server.port) as modbus:
        reply = await modbus.write_register(100, 550, device_id=1)  # 55.0 degC
        assert not reply.isError()
        assert station.plc.supply_setpoint_c == 55.0
        assert (await modbus.read_holding_registers(100, count=1, device_id=1)).registers == [550]

        station.step(3.0)  # 60 s stroke: 5 % of travel toward the 50 % that gives 55 degC
        server.update(station.measurements())
        assert (await modbus.read_input_registers(6, count=1, device_id=1)).registers == [550]

        await modbus.write_registers(102, [1, 250], device_id=1)  # manual, 25 %
        assert station.plc.valve_mode is ValveMode.MANUAL and station.plc.manual_valve_pct == 25.0
        station.step(60.0)
        server.update(station.measurements())
        assert (await modbus.read_input_registers(6, count=1, device_id=1)).registers == [250]


async def test_out_of_limit_write_is_refused_and_changes_nothing() -> None:
    station = FakeStation()
    async with serving(station) as server, client(server.port) as modbus:
        too_hot = await modbus.write_register(100, 960, device_id=1)
        below = await modbus.write_register(101, 240, device_id=1)
        negative = await modbus.write_register(100, 0x10000 - 50, device_id=1)  # -5.0 degC
        bad_mode = await modbus.write_register(102, 2, device_id=1)
        # one bad value in a multi-register write: none of the values is applied
        mixed = await modbus.write_registers(100, [500, 300, 1, 1010], device_id=1)
        assert [r.exception_code for r in (too_hot, below, negative, bad_mode, mixed)] == [3] * 5
        assert (await modbus.read_holding_registers(100, count=4, device_id=1)).registers == [600, 400, 0, 0]
    assert station.plc == FakePlc()


async def test_a_mask_write_changes_only_its_bits_within_the_plc_limits() -> None:
    station = FakeStation()
    async with serving(station) as server, client(server.port) as modbus:
        # 60.0 degC is 600 = 0b10_0101_1000: setting bit 0 makes it 601, 60.1 degC.
        assert not (await modbus.mask_write_register(address=100, and_mask=0xFFFE, or_mask=0x0001, device_id=1)).isError()
        assert station.plc.supply_setpoint_c == pytest.approx(60.1)
        assert (await modbus.read_holding_registers(100, count=1, device_id=1)).registers == [601]
        too_hot = await modbus.mask_write_register(address=100, and_mask=0xFBFF, or_mask=0x0400, device_id=1)  # 162.5
        read_only = await modbus.mask_write_register(address=104, and_mask=0xFFFE, or_mask=0x0001, device_id=1)
        assert [too_hot.exception_code, read_only.exception_code] == [3, 2]
        assert (await modbus.read_holding_registers(100, count=1, device_id=1)).registers == [601]
        server.set_comm_faults(1, CommFaults(unsupported_functions=frozenset({22})))
        unsupported = await modbus.mask_write_register(address=100, and_mask=0xFFFE, or_mask=0x0000, device_id=1)
        assert unsupported.exception_code == 1
    assert station.plc.supply_setpoint_c == pytest.approx(60.1)


async def test_write_to_read_only_or_unknown_addresses_is_refused_with_02() -> None:
    station = FakeStation()
    async with serving(station) as server, client(server.port) as modbus:
        replies = [
            await modbus.write_register(104, 100, device_id=1),  # PI gain is read-only
            await modbus.write_registers(102, [1, 500, 100], device_id=1),  # spans into 104
            await modbus.write_register(0, 1, device_id=2),  # meter is read-only
            await modbus.write_coil(3, True, device_id=1),  # no coil 3
        ]
        assert [r.exception_code for r in replies] == [2, 2, 2, 2]
        assert (await modbus.read_holding_registers(104, count=1, device_id=1)).registers == [250]
    assert station.plc == FakePlc()


async def test_coils_command_the_plc_and_alarm_reset_reads_back_zero() -> None:
    station = FakeStation()
    async with serving(station) as server, client(server.port) as modbus:
        assert not (await modbus.write_coil(0, False, device_id=1)).isError()
        assert not (await modbus.write_coils(1, [False, True], device_id=1)).isError()
        assert station.plc.pump_run_command is False and station.plc.makeup_auto is False
        assert station.plc.resets == 1
        assert (await modbus.read_coils(0, count=3, device_id=1)).bits[:3] == [False, False, False]
        await modbus.write_coil(2, False, device_id=1)  # writing 0 is not a reset
        assert station.plc.resets == 1


@pytest.mark.parametrize(
    ("function", "address", "count", "unit"),
    [
        ("read_input_registers", 60, 1, 1),
        ("read_input_registers", 58, 3, 1),
        ("read_holding_registers", 99, 2, 1),
        ("read_holding_registers", 107, 1, 1),
        ("read_coils", 3, 1, 1),
        ("read_coils", 0, 16, 1),
        ("read_discrete_inputs", 8, 1, 1),
        ("read_input_registers", 0, 2, 2),  # the meter has holding registers only
        ("read_holding_registers", 17, 1, 2),
    ],
)
async def test_addresses_outside_the_map_answer_02(function: str, address: int, count: int, unit: int) -> None:
    async with serving() as server, client(server.port) as modbus:
        reply = await getattr(modbus, function)(address, count=count, device_id=unit)
    assert reply.exception_code == 2


async def test_every_request_is_counted_per_unit_and_function() -> None:
    async with serving() as server, client(server.port, timeout=0.2) as modbus:
        for _ in range(3):
            await modbus.read_input_registers(0, count=20, device_id=1)
        await modbus.read_holding_registers(100, count=7, device_id=1)
        await modbus.read_holding_registers(300, count=1, device_id=1)  # refused, still a request
        await modbus.write_register(100, 2000, device_id=1)  # refused
        await modbus.read_holding_registers(0, count=17, device_id=2)
        server.set_comm_faults(2, CommFaults(offline=True))
        with pytest.raises(ModbusIOException):
            await modbus.read_holding_registers(0, count=17, device_id=2)  # swallowed, still counted
        assert server.request_counts() == {(1, 4): 3, (1, 3): 2, (1, 6): 1, (2, 3): 2}
        server.reset_request_counts()
        assert server.request_counts() == {}


async def test_offline_unit_times_out_while_the_other_unit_answers() -> None:
    station = FakeStation()
    async with serving(station) as server:
        server.set_comm_faults(1, CommFaults(offline=True))
        async with client(server.port, timeout=0.3) as modbus:
            started = time.monotonic()
            with pytest.raises(ModbusIOException):
                await modbus.read_input_registers(0, count=10, device_id=1)
            assert time.monotonic() - started >= 0.3
            with pytest.raises(ModbusIOException):
                await modbus.write_register(100, 500, device_id=1)  # writes are not applied either
            assert station.plc.supply_setpoint_c == 60.0
        async with client(server.port) as modbus:
            assert not (await modbus.read_holding_registers(0, count=2, device_id=2)).isError()
            server.set_comm_faults(1, CommFaults())
            assert not (await modbus.read_input_registers(0, count=10, device_id=1)).isError()


async def test_delay_slows_answers_and_a_late_answer_never_lands_on_the_next_request() -> None:
    async with serving() as server, client(server.port, timeout=1.0) as modbus:
        server.set_comm_faults(1, CommFaults(delay_s=0.3))
        started = time.monotonic()
        reply = await modbus.read_input_registers(0, count=1, device_id=1)
        assert 0.3 <= time.monotonic() - started < 1.0
        assert reply.registers == [0x10000 - 123]

        # The client gives up on an input-register read; its late answer arrives while the next
        # request (a holding-register read) is pending and must not be taken for that one's answer.
        server.set_comm_faults(1, CommFaults(delay_s=0.5))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(modbus.read_input_registers(0, count=1, device_id=1), 0.2)
        started = time.monotonic()
        reply = await modbus.read_holding_registers(100, count=1, device_id=1)
        assert reply.registers == [600]
        assert time.monotonic() - started >= 0.5  # its own delayed answer, not the stale one


async def test_exception_ranges_refuse_overlapping_requests_of_that_function_only() -> None:
    async with serving() as server, client(server.port) as modbus:
        server.set_comm_faults(1, CommFaults(exception_ranges=(ExceptionRange(4, 5, 2),)))
        assert (await modbus.read_input_registers(0, count=20, device_id=1)).exception_code == 2
        assert (await modbus.read_input_registers(6, count=1, device_id=1)).exception_code == 2
        assert not (await modbus.read_input_registers(0, count=5, device_id=1)).isError()
        assert not (await modbus.read_input_registers(7, count=13, device_id=1)).isError()
        assert not (await modbus.read_holding_registers(0, count=17, device_id=2)).isError()
        server.clear_comm_faults()
        assert not (await modbus.read_input_registers(0, count=20, device_id=1)).isError()


async def test_restart_on_the_same_port() -> None:
    async with serving() as server:
        port = server.port
        async with client(port, timeout=0.3) as modbus:
            assert not (await modbus.read_input_registers(0, count=1, device_id=1)).isError()
            await server.stop()
            assert not server.running
            with pytest.raises(ModbusException):
                await modbus.read_input_registers(0, count=1, device_id=1)
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT_S)
        await server.start()
        assert server.port == port
        async with client(port) as modbus:
            assert not (await modbus.read_input_registers(0, count=1, device_id=1)).isError()
        assert server.request_counts()[(1, 4)] == 2


async def test_stop_cancels_requests_held_by_a_delay() -> None:
    async with serving() as server, client(server.port, timeout=0.5) as modbus:
        server.set_comm_faults(1, CommFaults(delay_s=30.0))
        tasks_before = asyncio.all_tasks()
        pending = asyncio.ensure_future(modbus.read_input_registers(0, count=1, device_id=1))
        await asyncio.sleep(0.1)
        assert len(asyncio.all_tasks() - tasks_before) == 2  # the client's request and the server's handler
        await asyncio.wait_for(server.stop(), WAIT_S)
        assert asyncio.all_tasks() - tasks_before == {pending}
        with pytest.raises(ModbusException):
            await asyncio.wait_for(pending, WAIT_S)


def test_comm_faults_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        CommFaults(delay_s=-1)
    with pytest.raises(ValueError):
        ExceptionRange(3, 100, 0)
    server = StationModbusServer(FakeStation())
    with pytest.raises(ValueError):
        server.set_comm_faults(7, CommFaults(offline=True))
    with pytest.raises(ValueError):
        StationModbusServer(FakeStation(), meter_word_order="middle")  # type: ignore[arg-type]


def test_values_outside_a_register_saturate_instead_of_wrapping() -> None:
    pressure = lookup(Device.PLC, Block.INPUT, 3)
    outdoor = lookup(Device.PLC, Block.INPUT, 0)
    total = lookup(Device.PLC, Block.INPUT, 14)
    assert pressure is not None and outdoor is not None and total is not None
    assert encode_value(pressure, -0.05) == [0]  # a uint16 never shows a negative as 65xxx
    assert encode_value(pressure, 70.0) == [65535]
    assert encode_value(outdoor, -4000.0) == [0x8000]
    assert encode_value(outdoor, float("nan")) == [32767]
    assert encode_value(total, 5e6) == [0xFFFF, 0xFFFF]


async def test_a_taken_port_is_reported_as_oserror() -> None:
    async with serving() as server:
        with pytest.raises(OSError, match="cannot listen"):
            await StationModbusServer(FakeStation(), port=server.port).start()
        assert server.running
