"""A writable bit of a holding register is written with Mask Write Register (FC22), over a real socket.

The simulator's manual valve position (holding 103, 0.1 % per count) stands in for a PLC word: the
test sets it to a pattern of ones and zeros with its own client, then the gateway writes one bit
of it. The server counts every request by function code, so the tests can also prove what was
NOT sent: no coil write at the register's address, no read-modify-write of the whole register.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.app import Gateway
from gateway.writes import WriteResult
from sim.modbus_server import CommFaults, StationModbusServer
from tests.gateway.conftest import Recorder, station_config

PLC = 1
VALVE_WORD = 103
PATTERN = 0b10_1010_1010  # 682: 68.2 %, inside the PLC's 0..100 %
Counts = dict[tuple[int, int], int]


def with_bit_tags(data: dict[str, Any]) -> None:
    data.pop("mqtt")
    tags = data["devices"]["plc"]["tags"]
    for bit in (0, 1):
        tags[f"valve_word_bit{bit}"] = {"function": "holding", "address": VALVE_WORD, "type": "bool", "bit": bit,
                                        "group": "slow", "writable": {"min": 0, "max": 1}}


async def holding(server: StationModbusServer, address: int, value: int | None = None) -> int:
    """Set (when ``value`` is given) and read one holding register with a client of the test's own."""
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
    await client.connect()
    try:
        if value is not None:
            assert not (await client.write_register(address, value, device_id=PLC)).isError()
        reply = await client.read_holding_registers(address, count=1, device_id=PLC)
        assert not reply.isError(), reply
        return int(reply.registers[0])
    finally:
        client.close()


async def write_bits(server: StationModbusServer, *writes: tuple[str, int]) -> tuple[list[WriteResult], Counts]:
    """Run a gateway, make ``writes`` in order once the PLC is online; the results and the requests
    the server received for them."""
    gateway = Gateway(station_config(server.port, with_bit_tags))
    async with gateway:
        plc = gateway.devices["plc"]
        await Recorder(gateway.bus).wait_for(lambda: plc.online is True, 5, "PLC online")
        server.reset_request_counts()
        results = [await asyncio.wait_for(gateway.writes.write(tag, value, origin="test"), 5) for tag, value in writes]
        return results, server.request_counts()


async def test_a_register_bit_write_changes_exactly_that_bit_and_reads_it_back(
    station_server: StationModbusServer,
) -> None:
    assert await holding(station_server, VALVE_WORD, PATTERN) == PATTERN
    coils_before = (station_server.station.plc.pump_run_command, station_server.station.plc.makeup_auto)
    (set_bit0, clear_bit1), counts = await write_bits(station_server, ("valve_word_bit0", 1), ("valve_word_bit1", 0))
    assert set_bit0.accepted and set_bit0.readback is True, set_bit0
    assert clear_bit1.accepted and clear_bit1.readback is False, clear_bit1
    assert await holding(station_server, VALVE_WORD) == (PATTERN | 0b01) & ~0b10 == 0b10_1010_1001
    assert station_server.station.plc.manual_valve_pct == pytest.approx(68.1)
    assert (station_server.station.plc.pump_run_command, station_server.station.plc.makeup_auto) == coils_before
    assert counts[(PLC, 22)] == 2  # one Mask Write Register per write...
    assert not {fc for unit, fc in counts if unit == PLC} & {5, 6, 15, 16}  # ...and no coil or register write


async def test_a_device_without_mask_write_fails_the_bit_write_and_gets_no_read_modify_write(
    station_server: StationModbusServer,
) -> None:
    assert await holding(station_server, VALVE_WORD, PATTERN) == PATTERN
    station_server.set_comm_faults(PLC, CommFaults(unsupported_functions=frozenset({22})))
    (refused,), counts = await write_bits(station_server, ("valve_word_bit0", 1))
    assert not refused.accepted
    assert refused.reason == ("write failed: exception 1 (illegal function): the device does not support Mask Write "
                              "Register (function 22), the only safe way to write one bit of a register; nothing written")
    assert counts[(PLC, 22)] == 1
    assert not {fc for unit, fc in counts if unit == PLC} & {5, 6, 15, 16}
    assert await holding(station_server, VALVE_WORD) == PATTERN
