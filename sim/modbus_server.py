"""Modbus server for a simulated station: the PLC (unit 1) and the heat meter (unit 2).

Both units share one TCP port by default, as behind a station's Modbus TCP gateway; or the meter
gets its own TCP port; or it is served as Modbus RTU on a serial line, as most heat meters are
wired (on RS-485), which tests reach through a pseudo-terminal pair. Register contents and request validation come from ``sim.registers``; this
module only wires them to pymodbus and adds what a test rig needs on top of a device:

* writes reach the station PLC through the SimDevice ``action`` hook, with the PLC's limits
  (out of limits -> exception 03 and nothing changes; read-only -> exception 02);
* every request is counted per (unit id, function code), so a test can prove how many requests a
  gateway spent;
* communication faults per unit: ``offline`` (request swallowed, the client times out),
  ``delay_s`` (answers late), ``exception_ranges`` (exception 02 for matching requests) and
  ``unsupported_functions`` (exception 01, as from a device without e.g. Mask Write Register);
* a unit id nobody serves gets exception 0x0B on TCP (a gateway with nothing behind that id) and
  silence on the serial line (on RS-485 only the addressed device answers);
* ``stop()``/``start()`` restart the listener(s) on the same port(s), like a rebooting device.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from sim.readings import Measurements
from sim.registers import (
    DEFAULT_MAP,
    FUNCTION_BLOCKS,
    MASK_WRITE,
    METER_UNIT,
    PLC_UNIT,
    READ_FUNCTIONS,
    Block,
    Device,
    Image,
    RegisterMap,
    WordOrder,
    WriteRefused,
)
from sim.station_view import StationLike, StationView, apply_command, plc_settings

__all__ = ["StationLike", "StationModbusServer", "plc_settings"]  # plc_settings: tests compare the PLC before/after

log = logging.getLogger(__name__)

UNITS: dict[int, Device] = {PLC_UNIT: Device.PLC, METER_UNIT: Device.METER}
_BIT_BLOCKS = (Block.COIL, Block.DISCRETE_INPUT)


@dataclass(frozen=True, slots=True)
class ExceptionRange:
    """Requests with ``function_code`` touching ``address .. address+count-1`` get exception 02."""

    function_code: int
    address: int
    count: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.function_code <= 127 and 0 <= self.address <= 65535 and self.count >= 1):
            raise ValueError(f"invalid exception range {self}")

    def overlaps(self, function_code: int, address: int, count: int) -> bool:
        return (
            function_code == self.function_code
            and address < self.address + self.count
            and self.address < address + count
        )


@dataclass(frozen=True, slots=True)
class CommFaults:
    """How one unit misbehaves on the wire; the default is a healthy device."""

    offline: bool = False
    delay_s: float = 0.0
    exception_ranges: tuple[ExceptionRange, ...] = ()
    unsupported_functions: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 3600:
            raise ValueError(f"delay_s must be within 0..3600 s, got {self.delay_s}")


HEALTHY = CommFaults()


def request_span(pdu: ModbusPDU) -> tuple[int, int]:
    """(address, count) a request touches; single-coil/register and mask writes carry no count field."""
    if pdu.function_code in (5, 6, MASK_WRITE):
        return pdu.address, 1
    return pdu.address, pdu.count


class _Gate:
    """What stands between the wire and one listener's devices: counting, faults, the map.

    Counts and faults are shared by all listeners of a ``StationModbusServer``; ``units`` is
    what this particular port serves. A request for another unit gets exception 11 from a TCP
    gateway, and silence on a serial line (``serial``), where no device has that address.
    """

    def __init__(
        self,
        units: dict[int, Device],
        faults: dict[int, CommFaults],
        counts: Counter[tuple[int, int]],
        register_map: RegisterMap,
        *,
        serial: bool = False,
    ) -> None:
        self.units = units
        self.serial = serial
        self.register_map = register_map
        self.faults = faults
        self.counts = counts
        self.in_flight: set[asyncio.Task[Any]] = set()

    def faults_for(self, unit: int) -> CommFaults:
        """A unit's faults, if this port serves it; requests for other units are refused at once
        (or, on a serial line, not answered)."""
        return self.faults.get(unit, HEALTHY) if unit in self.units else HEALTHY

    def refusal(self, pdu: ModbusPDU) -> ExcCodes | None:
        """Exception a device answers before any value is touched, or ``None``."""
        device = self.units.get(pdu.dev_id)
        if device is None:
            return ExcCodes.GATEWAY_NO_RESPONSE  # a TCP gateway with nothing behind this unit id
        unsupported = self.faults_for(pdu.dev_id).unsupported_functions
        if pdu.function_code not in FUNCTION_BLOCKS or pdu.function_code in unsupported:
            return ExcCodes.ILLEGAL_FUNCTION
        address, count = request_span(pdu)
        if any(r.overlaps(pdu.function_code, address, count) for r in self.faults_for(pdu.dev_id).exception_ranges):
            return ExcCodes.ILLEGAL_ADDRESS
        return self.register_map.check_request(device, pdu.function_code, address, count)


@dataclass(frozen=True, slots=True)
class SerialLine:
    """A serial port to serve Modbus RTU on (a pty path in tests, /dev/ttyUSB0 on a bench)."""

    path: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1


class _GatedRequestHandler(ServerRequestHandler):
    """A pymodbus connection handler that passes each request through a ``_Gate`` first.

    Why a subclass rather than only SimDevice's ``action``: the action runs after pymodbus has
    already answered out-of-range addresses, sees coil requests in 16-bit words (so a read of
    coils 0..9 cannot be told from 0..15), and has no way to withhold a response (``offline``).
    A delay inside the action would also be unsafe: ``ServerRequestHandler.handle_request``
    re-reads ``self.last_pdu`` after awaiting the datastore, so a request arriving meanwhile (a
    client retrying after its timeout) would get the late answer under its transaction id.
    Here the request is captured first, the gate may sleep, and ``last_pdu`` is restored right
    before the stock handler runs; the stock handler then completes without suspending because
    ``StationModbusServer``'s action never awaits anything.
    """

    server: _GatedTcpServer | _GatedSerialServer

    async def handle_request(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if pdu is None:
            return
        gate = self.server.gate
        task = asyncio.current_task()
        assert task is not None
        gate.in_flight.add(task)
        try:
            await self._handle(gate, pdu, addr)
        finally:
            gate.in_flight.discard(task)

    async def _handle(self, gate: _Gate, pdu: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        gate.counts[(pdu.dev_id, pdu.function_code)] += 1
        if delay := gate.faults_for(pdu.dev_id).delay_s:
            await asyncio.sleep(delay)
        if gate.faults_for(pdu.dev_id).offline or not self.transport:
            return  # an offline unit never answers; a closed connection cannot
        if gate.serial and pdu.dev_id not in gate.units:
            return  # nobody on the line has that address
        if (code := gate.refusal(pdu)) is not None:
            self.server_send(
                ExceptionResponse(pdu.function_code, code, device_id=pdu.dev_id, transaction=pdu.transaction_id),
                addr,
            )
            return
        self.last_pdu, self.last_addr = pdu, addr
        await super().handle_request()


class _GatedTcpServer(ModbusTcpServer):
    """``ModbusTcpServer`` whose connections use ``_GatedRequestHandler`` (the only override)."""

    def __init__(self, devices: list[SimDevice], *, address: tuple[str, int], gate: _Gate) -> None:
        super().__init__(devices, address=address)
        self.gate = gate

    def callback_new_connection(self) -> _GatedRequestHandler:
        return _GatedRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _GatedSerialServer(ModbusSerialServer):
    """``ModbusSerialServer`` (RTU framing) whose line uses ``_GatedRequestHandler``."""

    def __init__(self, devices: list[SimDevice], *, line: SerialLine, gate: _Gate) -> None:
        super().__init__(devices, port=line.path, baudrate=line.baudrate, parity=line.parity,
                         stopbits=line.stopbits)
        self.gate = gate

    def callback_new_connection(self) -> _GatedRequestHandler:
        return _GatedRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class StationModbusServer:
    """Serves one station's PLC and heat meter over Modbus TCP on loopback (or any host).

    ``port=0`` (and ``meter_port=0``) bind a free port; after the first ``start()`` the chosen
    ports are kept, so ``stop()``/``start()`` come back on the same ones. ``meter_port=None``
    serves the meter as unit 2 on the PLC's port; ``meter_serial`` serves it as Modbus RTU on a
    serial line instead.

    Call ``update(measurements)`` whenever the station has moved; reads always answer from the
    latest snapshot plus the PLC's current settings, writes go straight to ``station.plc``.
    A station with more than one circuit (``register_map.layout.circuits > 1``) must be
    ``CircuitsLike``: each circuit's registers show its own instruments and write to its own PLC.
    """

    def __init__(
        self,
        station: StationLike,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        meter_port: int | None = None,
        meter_word_order: WordOrder = "big",
        meter_serial: SerialLine | None = None,
        register_map: RegisterMap = DEFAULT_MAP,
    ) -> None:
        if meter_word_order not in ("big", "little"):
            raise ValueError(f"meter_word_order must be 'big' or 'little', got {meter_word_order!r}")
        if meter_serial is not None and meter_port is not None:
            raise ValueError("the meter is served either on its own TCP port or on a serial line, not both")
        self._meter_serial = meter_serial
        self._station = station
        self._view = StationView(station, register_map.layout)
        self._map = register_map
        self._host = host
        self._ports: dict[Device, int] = {Device.PLC: port}
        if meter_port is not None:
            self._ports[Device.METER] = meter_port
        self._word_order: WordOrder = meter_word_order
        self._faults: dict[int, CommFaults] = {}
        self._counts: Counter[tuple[int, int]] = Counter()
        self._measurements = station.measurements()
        self._circuits = self._view.circuit_measurements()
        self._images: dict[Device, dict[Block, Image]] = {}
        self._listeners: list[_GatedTcpServer | _GatedSerialServer] = []
        self._encode()

    # --- lifetime ---

    async def start(self) -> None:
        """Listen on the configured ports (the same ones again after a ``stop()``)."""
        if self._listeners:
            return
        try:
            for device, port in list(self._ports.items()):
                units = self._units_on(device)
                gate = _Gate(units, self._faults, self._counts, self._map)
                listener = _GatedTcpServer(
                    [self._sim_device(unit, dev) for unit, dev in units.items()],
                    address=(self._host, port),
                    gate=gate,
                )
                try:
                    await listener.serve_forever(background=True)
                except RuntimeError as exc:  # pymodbus's way of saying the bind failed
                    raise OSError(f"cannot listen on {self._host}:{port} (in use?)") from exc
                self._listeners.append(listener)
                self._ports[device] = listener.transport.sockets[0].getsockname()[1]
            if self._meter_serial is not None:
                await self._serve_meter_serial(self._meter_serial)
        except BaseException:
            await self.stop()
            raise
        log.info("modbus server listening", extra={"fields": {"host": self._host, **self.ports}})

    async def _serve_meter_serial(self, line: SerialLine) -> None:
        units = {METER_UNIT: Device.METER}
        listener = _GatedSerialServer([self._sim_device(METER_UNIT, Device.METER)], line=line,
                                      gate=_Gate(units, self._faults, self._counts, self._map, serial=True))
        await listener.serve_forever(background=True)
        self._listeners.append(listener)
        log.info("modbus RTU meter listening", extra={"fields": {"serial": line.path, "baudrate": line.baudrate}})

    async def stop(self) -> None:
        """Close the listener(s) and every client connection; requests in flight are dropped."""
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            held = list(listener.gate.in_flight)
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            await listener.shutdown()
        if listeners:
            log.info("modbus server stopped", extra={"fields": self.ports})

    async def __aenter__(self) -> StationModbusServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return bool(self._listeners)

    @property
    def ports(self) -> dict[str, int | str]:
        """``{"plc_port": N, "meter_port": M}``; M equals N when the meter shares the port, and is
        the serial port's path when the meter speaks RTU."""
        plc = self._ports[Device.PLC]
        meter = self._meter_serial.path if self._meter_serial else self._ports.get(Device.METER, plc)
        return {"plc_port": plc, "meter_port": meter}

    @property
    def port(self) -> int:
        return self._ports[Device.PLC]

    @property
    def meter_port(self) -> int | str:
        return self.ports["meter_port"]

    # --- data ---

    @property
    def station(self) -> StationLike:
        return self._station

    @property
    def measurements(self) -> Measurements:
        """The snapshot the registers currently show (what a client reading now gets)."""
        return self._measurements

    def update(self, measurements: Measurements) -> None:
        """Publish a new snapshot of the station's instruments (circuits 1.. read from the station)."""
        self._measurements = measurements
        self._circuits = self._view.circuit_measurements()
        self._encode()

    def _encode(self) -> None:
        snapshot = self._view.snapshot(self._measurements, self._circuits)
        self._images = {device: self._map.encode(device, snapshot, self._word_order) for device in Device}

    # --- faults and statistics ---

    def set_comm_faults(self, unit: int, faults: CommFaults) -> None:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit}; the station has units {sorted(UNITS)}")
        if faults == HEALTHY:
            self._faults.pop(unit, None)
        else:
            self._faults[unit] = faults
        log.info("comm faults set", extra={"fields": {"unit": unit, **_describe(faults)}})

    def comm_faults(self, unit: int) -> CommFaults:
        return self._faults.get(unit, HEALTHY)

    def clear_comm_faults(self) -> None:
        self._faults.clear()
        log.info("comm faults cleared")

    def request_counts(self) -> dict[tuple[int, int], int]:
        """Requests received so far per (unit id, function code), answered or not."""
        return dict(self._counts)

    def reset_request_counts(self) -> None:
        self._counts.clear()

    # --- pymodbus wiring ---

    def _units_on(self, device: Device) -> dict[int, Device]:
        if device is Device.PLC and Device.METER not in self._ports and self._meter_serial is None:
            return dict(UNITS)
        return {unit: dev for unit, dev in UNITS.items() if dev is device}

    def _sim_device(self, unit: int, device: Device) -> SimDevice:
        """Memory laid out from the register map; the gate has already rejected anything else."""
        action = partial(self._action, device)
        if device is Device.METER:
            return SimDevice(id=unit, simdata=_registers(self._map, Block.HOLDING, device), action=action)
        return SimDevice(
            id=unit,
            simdata=(_bits(self._map, Block.COIL), _bits(self._map, Block.DISCRETE_INPUT),
                     _registers(self._map, Block.HOLDING, device), _registers(self._map, Block.INPUT, device)),
            action=action,
        )

    async def _action(
        self,
        device: Device,
        function_code: int,
        start_address: int,
        address: int,
        _count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """SimDevice hook: fill registers before a read, validate and apply a write.

        Must never await anything that suspends (see ``_GatedRequestHandler``). The read-backs
        pymodbus does inside FC05/FC06 to build the echo are left alone, so the echo is what
        was written even for the alarm-reset coil, which then reads 0. A mask write (FC22) reads
        the register first to apply its masks to: that read sees the current value.
        """
        block = FUNCTION_BLOCKS[function_code]
        if values is None:
            if function_code in READ_FUNCTIONS or function_code == MASK_WRITE:
                _fill(registers, start_address, self._images[device].get(block, {}), bits=block in _BIT_BLOCKS)
            return None
        try:
            commands = self._map.decode_write(
                device, block, address, values, self._view.bounds
            )
        except WriteRefused as exc:
            log.info("write refused", extra={"fields": {
                "device": device, "block": block, "address": address, "code": int(exc.code), "reason": str(exc)}})
            return exc.code
        for command in commands:
            apply_command(self._view.plc(command.circuit), command)
            log.info("plc write", extra={"fields": {
                "circuit": command.circuit, "setting": command.setting, "value": command.value}})
        self._encode()
        return None


def _registers(register_map: RegisterMap, block: Block, device: Device) -> list[SimData]:
    return [
        SimData(row.address, count=row.words, datatype=DataType.REGISTERS, readonly=not row.writable)
        for row in register_map.rows(device, block)
    ]


def _bits(register_map: RegisterMap, block: Block) -> list[SimData]:
    size = max(row.address for row in register_map.rows(Device.PLC, block)) + 1
    return [SimData(0, values=[False] * size, datatype=DataType.BITS)]


def _fill(registers: list[int], start_address: int, image: Image, *, bits: bool) -> None:
    """Copy an image into pymodbus's block (bit blocks: 16 bits per word, bit 0 first)."""
    if bits:
        words: Image = {}
        for address, bit in image.items():
            words[address // 16] = words.get(address // 16, 0) | (bit << (address % 16))
        image = words
    for address, word in image.items():
        registers[address - start_address] = word


def _describe(faults: CommFaults) -> dict[str, Any]:
    ranges = ",".join(f"fc{r.function_code}:{r.address}+{r.count}" for r in faults.exception_ranges)
    unsupported = ",".join(str(code) for code in sorted(faults.unsupported_functions))
    return {"offline": faults.offline, "delay_s": faults.delay_s, "exception_ranges": ranges or "none",
            "unsupported_functions": unsupported or "none"}
