"""The station's Modbus register map, as data, and the pure functions that use it.

``RegisterMap`` is the single source of truth: the Modbus server builds its memory layout from
it, encodes every ``Snapshot`` through it, validates every request and write against it, and
the docs print it (commissioning/register-map.md) (``markdown_table``). Nothing here does I/O, so the map can be tested
without sockets and a change to it shows up everywhere at once.

The map is generated from the station's ``Layout`` (circuits and rooms). Circuit 0 and the
station-wide values keep the one-circuit layout (``REGISTER_MAP``, the demo station's); every
further circuit c repeats circuit 0's own rows at a fixed offset (``circuit_address``), and room
slots grow past ``ROOM_SLOTS`` when a station has more rooms, so a gateway's tag file for a
smaller station stays valid on a larger one.

Conventions: ``raw * scale`` is the engineering value. 16-bit registers are big-endian as Modbus
requires. 32-bit PLC values are high word first; the heat meter's float32/uint32 follow its
configurable word order; the BCD energy counter is always high word first.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Literal

from pymodbus.constants import ExcCodes

from sim.plc import PlcLimits
from sim.readings import Measurements

PLC_UNIT = 1
METER_UNIT = 2
ROOM_SLOTS = 20
ROOM_BASE_ADDRESS = 20
CIRCUIT_INPUT_BASE = 1000
"""Circuit c >= 1 repeats input registers 0..19 at 1000 + 20 (c - 1) + j (rooms stay below 1000)."""
CIRCUIT_INPUT_STRIDE = 20
CIRCUIT_HOLDING_STRIDE = 10
"""Circuit c repeats holding registers 100..106 at 100 + 10 c + j."""
CIRCUIT_BIT_STRIDE = 10
"""Circuit c repeats coils 0..2 and discrete inputs 0..7 at 10 c + j."""
MAX_ROOMS = (CIRCUIT_INPUT_BASE - ROOM_BASE_ADDRESS) // 2
NO_READING = 32767  # room temperature register (the int16 maximum) before the sensor has ever reported

WordOrder = Literal["big", "little"]


class Device(StrEnum):
    """The two Modbus devices of a station."""

    PLC = "plc"
    METER = "meter"


class Block(StrEnum):
    """The four Modbus data tables, in the order the map lists them."""

    INPUT = "input"
    HOLDING = "holding"
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"


class DType(StrEnum):
    """How a value is laid out in registers (``bit`` for coils and discrete inputs)."""

    BIT = "bit"
    INT16 = "int16"
    UINT16 = "uint16"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    BCD32 = "bcd32"


WORDS = {DType.BIT: 1, DType.INT16: 1, DType.UINT16: 1, DType.UINT32: 2, DType.FLOAT32: 2, DType.BCD32: 2}
_INT_RANGE = {DType.INT16: (-32768, 32767), DType.UINT16: (0, 65535), DType.UINT32: (0, 2**32 - 1)}

READ_FUNCTIONS: Mapping[int, Block] = {1: Block.COIL, 2: Block.DISCRETE_INPUT, 3: Block.HOLDING, 4: Block.INPUT}
MASK_WRITE = 22  # Mask Write Register: bits of one holding register changed in place
WRITE_FUNCTIONS: Mapping[int, Block] = {
    5: Block.COIL, 15: Block.COIL, 6: Block.HOLDING, 16: Block.HOLDING, MASK_WRITE: Block.HOLDING,
}
FUNCTION_BLOCKS: Mapping[int, Block] = {**READ_FUNCTIONS, **WRITE_FUNCTIONS}


class StatusBit(IntEnum):
    """Bits of the PLC status word (input register 17); discrete input N mirrors bit N."""

    PUMP_RUNNING = 0
    PUMP_FAULT = 1
    MAKEUP_RUNNING = 2
    MAKEUP_FAULT = 3
    PIT_FLOODED = 4
    OVERTEMP_TRIP = 5
    OVERPRESSURE_TRIP = 6
    PRIMARY_SUPPLY_LOST = 7


@dataclass(frozen=True, slots=True)
class PlcSettings:
    """What the PLC's holding registers and coils show: its setpoints, commands and tuning."""

    supply_setpoint_c: float
    pump_frequency_setpoint_hz: float
    valve_mode: int  # 0 auto, 1 manual
    manual_valve_pct: float
    pi_gain_pct_per_k: float
    pi_integral_s: float
    valve_stroke_s: float
    pump_run_command: bool
    makeup_auto: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the registers are encoded from, at one instant.

    ``measurements`` and ``plc`` are circuit 0's (its rooms are every room of the station and its
    meter the station's heat meter); ``circuits`` holds circuits 1.. the same way.
    """

    measurements: Measurements
    plc: PlcSettings
    circuits: tuple[Snapshot, ...] = ()

    def circuit(self, index: int) -> Snapshot:
        return self if index == 0 else self.circuits[index - 1]


Value = float | int | bool
Image = dict[int, int]  # address -> 16-bit word (registers) or 0/1 (coils, discrete inputs)
Source = Callable[[Snapshot], Value]


@dataclass(frozen=True, slots=True)
class Limits:
    """Accepted range of a writable value in engineering units.

    ``PLC_LIMITS`` (both bounds ``None``) means the range is the PLC's own (``sim.plc.PlcLimits``),
    looked up when the write arrives: the PLC owns those numbers and may be configured with others.
    """

    low: float | None = None
    high: float | None = None


PLC_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Register:
    """One row of the map: a value occupying ``words`` consecutive addresses of one block."""

    device: Device
    block: Block
    address: int
    name: str
    dtype: DType
    scale: float
    unit: str
    description: str
    source: Source = field(repr=False, compare=False)
    writable: bool = False
    limits: Limits | None = None
    command: str | None = None  # the PLC setting a write changes (see PlcCommand)
    meter_word_order: bool = False  # 32-bit value that follows the meter's configurable word order
    circuit: int = 0  # the heating circuit whose PLC loop a write goes to

    @property
    def words(self) -> int:
        return WORDS[self.dtype]

    @property
    def addresses(self) -> range:
        return range(self.address, self.address + self.words)


@dataclass(frozen=True, slots=True)
class PlcCommand:
    """A validated write, in engineering units, for the server to apply to the PLC.

    ``setting`` names the PLC attribute (``supply_setpoint_c``, ``valve_mode`` as 0/1 ...) or is
    ``reset_alarms`` for the alarm-reset pulse.
    """

    setting: str
    value: float | bool
    circuit: int = 0


class WriteRefused(Exception):
    """A write the PLC rejects; ``code`` is the Modbus exception code it answers with."""

    def __init__(self, code: ExcCodes, reason: str) -> None:
        super().__init__(reason)
        self.code = code


# --- the map --------------------------------------------------------------------------------

def _m(attribute: str) -> Source:
    return lambda snap: getattr(snap.measurements, attribute)


def _meter(attribute: str) -> Source:
    return lambda snap: getattr(snap.measurements.meter, attribute)


def _plc(attribute: str) -> Source:
    return lambda snap: getattr(snap.plc, attribute)


def _zero(_snap: Snapshot) -> int:
    return 0


_STATUS_FLAGS: tuple[tuple[StatusBit, str, str], ...] = (
    (StatusBit.PUMP_RUNNING, "pump_running", "circulation pump running"),
    (StatusBit.PUMP_FAULT, "pump_fault", "circulation pump fault"),
    (StatusBit.MAKEUP_RUNNING, "makeup_pump_running", "make-up pump running"),
    (StatusBit.MAKEUP_FAULT, "makeup_pump_fault", "make-up pump fault"),
    (StatusBit.PIT_FLOODED, "pit_flooded", "pit flooded"),
    (StatusBit.OVERTEMP_TRIP, "overtemp_trip", "over-temperature trip (latched)"),
    (StatusBit.OVERPRESSURE_TRIP, "overpressure_trip", "over-pressure trip (latched)"),
    (StatusBit.PRIMARY_SUPPLY_LOST, "primary_supply_lost", "primary supply lost"),
)


def _status_word(snap: Snapshot) -> int:
    return sum(1 << bit for bit, attribute, _ in _STATUS_FLAGS if getattr(snap.measurements, attribute))


def _room_temperature(index: int) -> Source:
    """Room ``index``'s temperature; no room or no reading yet saturates to ``NO_READING``."""

    def source(snap: Snapshot) -> Value:
        rooms = snap.measurements.rooms
        reading = rooms[index].temperature_c if index < len(rooms) else None
        return math.inf if reading is None else reading

    return source


def _room_age(index: int) -> Source:
    def source(snap: Snapshot) -> Value:
        rooms = snap.measurements.rooms
        return rooms[index].age_s if index < len(rooms) else math.inf

    return source


def _ir(address: int, name: str, dtype: DType, scale: float, unit: str, source: Source, description: str) -> Register:
    return Register(Device.PLC, Block.INPUT, address, name, dtype, scale, unit, description, source)


def _temp(address: int, name: str, attribute: str, description: str) -> Register:
    return _ir(address, name, DType.INT16, 0.1, "°C", _m(attribute), description)


def _pressure(address: int, name: str, attribute: str, description: str) -> Register:
    return _ir(address, name, DType.UINT16, 0.001, "MPa", _m(attribute), description)


def _plc_input_registers(room_slots: int) -> list[Register]:
    table = [
        _temp(0, "outdoor_temperature", "outdoor_c", "outdoor temperature (850.0 = open sensor)"),
        _temp(1, "primary_supply_temperature", "primary_supply_c", "primary supply temperature"),
        _temp(2, "primary_return_temperature", "primary_return_c", "primary return temperature"),
        _pressure(3, "primary_supply_pressure", "primary_supply_mpa", "primary supply pressure"),
        _pressure(4, "primary_return_pressure", "primary_return_mpa", "primary return pressure"),
        _ir(5, "primary_flow", DType.UINT16, 0.1, "m³/h", _m("primary_flow_m3h"), "primary flow"),
        _ir(6, "valve_position", DType.UINT16, 0.1, "%", _m("valve_pct"), "control valve position (actual)"),
        _temp(7, "secondary_supply_temperature", "secondary_supply_c", "secondary supply temperature"),
        _temp(8, "secondary_return_temperature", "secondary_return_c", "secondary return temperature"),
        _pressure(9, "secondary_supply_pressure", "secondary_supply_mpa", "secondary supply pressure"),
        _pressure(10, "secondary_return_pressure", "secondary_return_mpa", "secondary return pressure"),
        _ir(11, "secondary_flow", DType.UINT16, 0.1, "m³/h", _m("secondary_flow_m3h"), "secondary flow"),
        _ir(12, "pump_frequency", DType.UINT16, 0.1, "Hz", _m("pump_frequency_hz"),
            "circulation pump frequency (actual)"),
        _ir(13, "makeup_flow", DType.UINT16, 0.01, "m³/h", _m("makeup_flow_m3h"), "make-up flow"),
        _ir(14, "makeup_total", DType.UINT32, 0.001, "m³", _m("makeup_total_m3"), "make-up total (high word first)"),
        _ir(16, "tank_level", DType.UINT16, 0.1, "%", _m("tank_level_pct"), "softened-water tank level"),
        _ir(17, "status_word", DType.UINT16, 1, "", _status_word, "status bits 0-7, same order as discrete inputs 0-7"),
        _ir(18, "unused_18", DType.UINT16, 1, "", _zero, "unused, reads 0"),
        _ir(19, "unused_19", DType.UINT16, 1, "", _zero, "unused, reads 0"),
    ]
    for i in range(room_slots):
        base = ROOM_BASE_ADDRESS + 2 * i
        table.append(_ir(base, f"room_{i}_temperature", DType.INT16, 0.1, "°C", _room_temperature(i),
                         f"room {i} temperature, station order ({NO_READING} = no reading yet)"))
        table.append(_ir(base + 1, f"room_{i}_age", DType.UINT16, 1, "s", _room_age(i),
                         f"room {i} reading age (saturates at 65535)"))
    return table


def _hr(address: int, name: str, dtype: DType, scale: float, unit: str, description: str, setting: str,
        limits: Limits | None = None) -> Register:
    return Register(Device.PLC, Block.HOLDING, address, name, dtype, scale, unit, description, _plc(setting),
                    writable=limits is not None, limits=limits, command=setting if limits is not None else None)


def _plc_holding_registers() -> list[Register]:
    return [
        _hr(100, "supply_setpoint", DType.INT16, 0.1, "°C", "secondary supply setpoint", "supply_setpoint_c",
            PLC_LIMITS),
        _hr(101, "pump_frequency_setpoint", DType.UINT16, 0.1, "Hz", "circulation pump frequency setpoint",
            "pump_frequency_setpoint_hz", PLC_LIMITS),
        _hr(102, "valve_mode", DType.UINT16, 1, "", "valve mode: 0 auto (PI), 1 manual", "valve_mode", Limits(0, 1)),
        _hr(103, "manual_valve_position", DType.UINT16, 0.1, "%", "valve position used in manual mode",
            "manual_valve_pct", PLC_LIMITS),
        _hr(104, "pi_gain", DType.UINT16, 0.01, "%/K", "valve PI gain", "pi_gain_pct_per_k"),
        _hr(105, "pi_integral_time", DType.UINT16, 1, "s", "valve PI integral time", "pi_integral_s"),
        _hr(106, "valve_stroke_time", DType.UINT16, 1, "s", "valve stroke time", "valve_stroke_s"),
    ]


def _coil(address: int, name: str, setting: str, source: Source, description: str) -> Register:
    return Register(Device.PLC, Block.COIL, address, name, DType.BIT, 1, "", description, source,
                    writable=True, command=setting)


def _plc_bits() -> list[Register]:
    table = [
        _coil(0, "pump_run_command", "pump_run_command", _plc("pump_run_command"), "circulation pump run command"),
        _coil(1, "makeup_auto", "makeup_auto", _plc("makeup_auto"),
              "make-up pump in automatic (holds static pressure)"),
        _coil(2, "alarm_reset", "reset_alarms", lambda _snap: False,
              "write 1 to reset latched interlocks whose cause is gone; reads 0"),
    ]
    table += [
        Register(Device.PLC, Block.DISCRETE_INPUT, int(bit), attribute, DType.BIT, 1, "", description, _m(attribute))
        for bit, attribute, description in _STATUS_FLAGS
    ]
    return table


def _mr(address: int, name: str, dtype: DType, unit: str, source: Source, description: str) -> Register:
    return Register(Device.METER, Block.HOLDING, address, name, dtype, 1, unit, description, source,
                    meter_word_order=dtype in (DType.FLOAT32, DType.UINT32))


def _meter_registers() -> list[Register]:
    return [
        _mr(0, "flow", DType.FLOAT32, "m³/h", _meter("flow_m3h"), "flow"),
        _mr(2, "power", DType.FLOAT32, "kW", _meter("power_kw"), "thermal power"),
        _mr(4, "supply_temperature", DType.FLOAT32, "°C", _meter("supply_c"), "supply temperature"),
        _mr(6, "return_temperature", DType.FLOAT32, "°C", _meter("return_c"), "return temperature"),
        _mr(8, "energy_gj", DType.FLOAT32, "GJ", _meter("energy_gj"), "energy"),
        _mr(10, "volume", DType.FLOAT32, "m³", _meter("volume_m3"), "volume"),
        _mr(12, "energy_kwh", DType.UINT32, "kWh", lambda s: math.floor(s.measurements.meter.energy_kwh),
            "energy, whole kWh"),
        _mr(14, "energy_kwh_bcd", DType.BCD32, "kWh", lambda s: math.floor(s.measurements.meter.energy_kwh),
            "energy as 8 BCD digits, high word first always"),
        _mr(16, "status", DType.UINT16, "", _meter("status"), "bit 0 probe error, 1 no flow, 2 reverse/low dT"),
    ]


@dataclass(frozen=True, slots=True)
class Layout:
    """What the map is generated from: the station's heating circuits and representative rooms."""

    circuits: int = 1
    rooms: int = ROOM_SLOTS

    def __post_init__(self) -> None:
        if self.circuits < 1:
            raise ValueError("a station has at least one circuit")
        if not 0 <= self.rooms <= MAX_ROOMS:
            raise ValueError(f"the room block holds at most {MAX_ROOMS} rooms, got {self.rooms}")

    @property
    def room_slots(self) -> int:
        """Never fewer than ``ROOM_SLOTS``: a smaller station keeps the demo's addresses."""
        return max(ROOM_SLOTS, self.rooms)


def circuit_address(block: Block, address: int, circuit: int) -> int:
    """Where circuit ``circuit`` has the value circuit 0 has at ``address`` (the rule the register-map page states)."""
    if circuit == 0:
        return address
    if block is Block.INPUT:
        return CIRCUIT_INPUT_BASE + CIRCUIT_INPUT_STRIDE * (circuit - 1) + address
    if block is Block.HOLDING:
        return address + CIRCUIT_HOLDING_STRIDE * circuit
    return address + CIRCUIT_BIT_STRIDE * circuit


def _for_circuit(row: Register, circuit: int) -> Register:
    """Circuit ``circuit``'s copy of one of circuit 0's rows: same value, read from that circuit."""
    source = row.source
    return replace(
        row,
        address=circuit_address(row.block, row.address, circuit),
        name=f"c{circuit}_{row.name}",
        description=f"circuit {circuit}: {row.description}",
        source=lambda snap: source(snap.circuit(circuit)),
        circuit=circuit,
    )


def build_map(layout: Layout) -> tuple[Register, ...]:
    """Every row of a station with ``layout``: circuit 0, the rooms and the meter, then circuits 1.."""
    plc_inputs = _plc_input_registers(layout.room_slots)
    per_circuit = [r for r in plc_inputs if r.address < ROOM_BASE_ADDRESS] + _plc_holding_registers() + _plc_bits()
    table = plc_inputs + _plc_holding_registers() + _plc_bits() + _meter_registers()
    table += [_for_circuit(row, c) for c in range(1, layout.circuits) for row in per_circuit]
    return tuple(table)


def _index(table: Iterable[Register]) -> dict[tuple[Device, Block, int], Register]:
    """Every address a row occupies (both words of a 32-bit value) -> that row."""
    return {(row.device, row.block, address): row for row in table for address in row.addresses}


class RegisterMap:
    """The map of one station: its rows, the requests they allow, and their encoding."""

    def __init__(self, layout: Layout = Layout()) -> None:
        self.layout = layout
        self.table = build_map(layout)
        self._by_address = _index(self.table)

    def rows(self, device: Device, block: Block | None = None, circuit: int | None = None) -> tuple[Register, ...]:
        """The map's rows for one device (optionally one block, one circuit), in address order."""
        selected = (
            r for r in self.table
            if r.device is device and (block is None or r.block is block) and (circuit is None or r.circuit == circuit)
        )
        return tuple(sorted(selected, key=lambda r: (list(Block).index(r.block), r.address)))

    def lookup(self, device: Device, block: Block, address: int) -> Register | None:
        """The row covering ``address`` (either word of a 32-bit value), or ``None`` outside the map."""
        return self._by_address.get((device, block, address))

    def check_request(self, device: Device, function_code: int, address: int, count: int) -> ExcCodes | None:
        """Answer a real device would give before touching any value, or ``None`` to go ahead.

        Unsupported function -> 01; any address outside the map, or a write touching a read-only
        address -> 02. Value limits are checked later, by ``decode_write``.
        """
        block = FUNCTION_BLOCKS.get(function_code)
        if block is None:
            return ExcCodes.ILLEGAL_FUNCTION
        covered = [self.lookup(device, block, a) for a in range(address, address + count)]
        if not covered or any(row is None for row in covered):
            return ExcCodes.ILLEGAL_ADDRESS
        if function_code in WRITE_FUNCTIONS and not all(row.writable for row in covered if row):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    def decode_write(
        self,
        device: Device,
        block: Block,
        address: int,
        values: Sequence[int] | Sequence[bool],
        plc_bounds: Callable[[int, str], tuple[float, float]],
    ) -> tuple[PlcCommand, ...]:
        """Turn a coil/register write into PLC commands, all-or-nothing.

        ``plc_bounds(circuit, setting)`` gives that circuit's PLC (low, high) for rows whose
        limits are ``PLC_LIMITS``. Raises ``WriteRefused`` (02 read-only or outside the map, 03
        out of limits) before returning any command, so a multi-register write with one bad
        value changes nothing. Every writable register is a single word.
        """
        commands: list[PlcCommand] = []
        for offset, raw in enumerate(values):
            row = self.lookup(device, block, address + offset)
            if row is None or not row.writable or row.command is None:
                raise WriteRefused(ExcCodes.ILLEGAL_ADDRESS, f"{block} {address + offset} is not writable")
            if row.dtype is DType.BIT:
                if row.command == "reset_alarms":
                    if raw:
                        commands.append(PlcCommand("reset_alarms", True, row.circuit))
                else:
                    commands.append(PlcCommand(row.command, bool(raw), row.circuit))
                continue
            value = decode(row, [int(raw)])
            low, high = _resolve(row, plc_bounds)
            if not low <= value <= high:
                raise WriteRefused(ExcCodes.ILLEGAL_VALUE, f"{row.name}={value:g} outside {low:g}..{high:g}")
            commands.append(PlcCommand(row.command, value, row.circuit))
        return tuple(commands)

    def encode(self, device: Device, snapshot: Snapshot, word_order: WordOrder = "big") -> dict[Block, Image]:
        """The four tables of one device as the wire shows them."""
        images: dict[Block, Image] = {}
        for row in self.rows(device):
            words = encode_value(row, row.source(snapshot), word_order)
            images.setdefault(row.block, {}).update(zip(row.addresses, words, strict=True))
        return images


DEFAULT_MAP = RegisterMap()
"""The one-circuit map with ``ROOM_SLOTS`` rooms: the demo station's."""
REGISTER_MAP: tuple[Register, ...] = DEFAULT_MAP.table


def rows(device: Device, block: Block | None = None) -> tuple[Register, ...]:
    """The default map's rows for one device (and optionally one block), in address order."""
    return DEFAULT_MAP.rows(device, block)


def lookup(device: Device, block: Block, address: int) -> Register | None:
    """The default map's row covering ``address``, or ``None`` outside the map."""
    return DEFAULT_MAP.lookup(device, block, address)


def _resolve(row: Register, plc_bounds: Callable[[int, str], tuple[float, float]]) -> tuple[float, float]:
    limits = row.limits or PLC_LIMITS
    if limits.low is not None and limits.high is not None:
        return limits.low, limits.high
    assert row.command is not None
    return plc_bounds(row.circuit, row.command)


# --- encoding -------------------------------------------------------------------------------


def encode_value(row: Register, value: Value, word_order: WordOrder = "big") -> list[int]:
    """Engineering value -> register words, saturating at the type's range like a PLC does."""
    if row.dtype is DType.BIT:
        return [int(bool(value))]
    if row.dtype is DType.FLOAT32:
        words = list(struct.unpack(">HH", struct.pack(">f", float(value))))
    elif row.dtype is DType.BCD32:
        digits = f"{int(value) % 10**8:08d}"
        words = [int(digits[:4], 16), int(digits[4:], 16)]
    else:
        low, high = _INT_RANGE[row.dtype]
        raw = _saturate(float(value) / row.scale, low, high)
        words = list(struct.unpack(">HH", struct.pack(">I", raw))) if row.dtype is DType.UINT32 else [raw & 0xFFFF]
    if row.meter_word_order and word_order == "little":
        words.reverse()
    return words


def _saturate(scaled: float, low: int, high: int) -> int:
    """Clamp to the type's range as a PLC's scaling block does; NaN shows as the maximum."""
    if math.isnan(scaled):
        return high
    if math.isinf(scaled):
        return high if scaled > 0 else low
    return min(max(round(scaled), low), high)


def decode(row: Register, words: Sequence[int], word_order: WordOrder = "big") -> float:
    """Register words -> engineering value: the inverse of ``encode_value`` (used for writes and by tests)."""
    ordered = list(words)
    if row.meter_word_order and word_order == "little":
        ordered.reverse()
    if row.dtype is DType.FLOAT32:
        return struct.unpack(">f", struct.pack(">HH", *ordered))[0]
    if row.dtype is DType.BCD32:
        return float(int(f"{ordered[0]:04x}{ordered[1]:04x}"))
    if row.dtype is DType.UINT32:
        raw = (ordered[0] << 16) | ordered[1]
    elif row.dtype is DType.INT16:
        raw = ordered[0] - 0x10000 if ordered[0] & 0x8000 else ordered[0]
    else:
        raw = ordered[0]
    return round(raw * row.scale, 6)


# --- documentation --------------------------------------------------------------------------

def markdown_table(device: Device, *, all_rooms: bool = False) -> str:
    """The one-circuit map of one device as a Markdown table for the register-map page.

    Rooms 1..19 repeat room 0's layout, so unless ``all_rooms`` they are folded into room 0's
    rows with the address written as ``20+2i`` / ``21+2i``.
    """
    lines = list(_TABLE_HEADER)
    for row in DEFAULT_MAP.rows(device):
        address, name, description = _address_text(row), row.name, row.description
        if row.name.startswith("room_") and not all_rooms:
            if not row.name.startswith("room_0_"):
                continue
            offset = row.address - ROOM_BASE_ADDRESS
            address = f"{ROOM_BASE_ADDRESS + offset}+2i"
            name = row.name.replace("room_0_", "room_i_")
            description = row.description.replace("room 0", f"room i (i = 0..{ROOM_SLOTS - 1})")
        lines.append(_table_line(row, address, name, description))
    return "\n".join(lines)


def circuit_markdown_table() -> str:
    """The rows every circuit c >= 1 adds, with their addresses as functions of c (for the register-map page)."""
    lines = list(_TABLE_HEADER)
    for row in RegisterMap(Layout(circuits=2)).rows(Device.PLC, circuit=1):
        base = circuit_address(row.block, 0, 1)
        if row.block is Block.INPUT:
            address = f"{CIRCUIT_INPUT_BASE}+{CIRCUIT_INPUT_STRIDE}(c-1)+{row.address - base}"
        else:
            stride = CIRCUIT_HOLDING_STRIDE if row.block is Block.HOLDING else CIRCUIT_BIT_STRIDE
            address = f"{row.address - stride}+{stride}c"
        if row.words == 2:
            address += " (2 words)"
        name = row.name.replace("c1_", "c{c}_", 1)
        lines.append(_table_line(row, address, name, row.description.replace("circuit 1", "circuit c", 1)))
    return "\n".join(lines)


_TABLE_HEADER = (
    "| Table | Address | Name | Type | Scale | Unit | Access | Limits | Description |",
    "|---|---|---|---|---|---|---|---|---|",
)


def _address_text(row: Register) -> str:
    return f"{row.address}-{row.address + 1}" if row.words == 2 else str(row.address)


def _table_line(row: Register, address: str, name: str, description: str) -> str:
    dtype = f"{row.dtype} ({'meter word order' if row.meter_word_order else 'high word first'})" \
        if row.words == 2 and row.dtype is not DType.BCD32 else str(row.dtype)
    access = "read/write" if row.writable else "read"
    allowed = FUNCTION_BLOCKS if row.writable else READ_FUNCTIONS
    functions = "/".join(f"{fc:02d}" for fc, block in allowed.items() if block is row.block)
    cells = [f"{row.block} (FC{functions})", address, name, dtype, f"{row.scale:g}", row.unit, access,
             _limits_text(row), description]
    return "| " + " | ".join(cells) + " |"


def _limits_text(row: Register) -> str:
    if row.limits is None:
        return ""
    if row.limits.low is not None and row.limits.high is not None:
        return f"{row.limits.low:g} to {row.limits.high:g}"
    assert row.command is not None
    low, high = PlcLimits().bounds(row.command)
    return f"{low:g} to {high:g} (PLC default)"
