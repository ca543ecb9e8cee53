"""One Modbus transport (a TCP connection or an RS-485 line) and the requests sent over it.

pymodbus does the framing; this module gives the rest of the driver three things pymodbus does not:

* typed failures (``LinkTimeout``, ``LinkDown``, ``ExceptionReply``) instead of a mix of error
  responses and exceptions, so callers can set the right quality reason;
* one request at a time per link, because an RS-485 line is a shared wire and a serial-to-Ethernet
  converter usually is too;
* no hidden reconnect loop: pymodbus's own is disabled so the poller decides when to retry, with
  backoff and jitter, and knows the device is down meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.modbus.points import Function

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class LinkError(Exception):
    """A request did not produce data."""


class LinkTimeout(LinkError):
    """The device did not answer within its timeout (after the configured retries)."""


class LinkDown(LinkError):
    """No connection (refused, reset, serial port gone)."""


class ExceptionReply(LinkError):
    """The device answered with a Modbus exception."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
        self.code = code


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SerialEndpoint:
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1


class ModbusLink:
    """A connection to one endpoint, shared by the devices (unit ids) behind it."""

    def __init__(self, endpoint: TcpEndpoint | SerialEndpoint, *, timeout_s: float, retries: int) -> None:
        self.endpoint = endpoint
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(endpoint, TcpEndpoint):
            self._client = AsyncModbusTcpClient(
                endpoint.host, port=endpoint.port, timeout=timeout_s, retries=retries, reconnect_delay=0
            )
        else:
            self._client = AsyncModbusSerialClient(
                endpoint.port, baudrate=endpoint.baudrate, parity=endpoint.parity,
                stopbits=endpoint.stopbits, timeout=timeout_s, retries=retries, reconnect_delay=0,
            )

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the connection; raise LinkDown when the device cannot be reached."""
        async with self._lock:
            if self._client.connected:
                return
            try:
                ok = await self._client.connect()
            except (OSError, ModbusException) as exc:
                raise LinkDown(str(exc) or type(exc).__name__) from exc
            if not ok:
                raise LinkDown(f"cannot connect to {self.describe()}")

    def close(self) -> None:
        self._client.close()

    async def read(self, unit: int, function: Function, address: int, count: int) -> list[int] | list[bool]:
        """Read ``count`` registers (or bits) starting at ``address``."""
        calls = {
            Function.HOLDING: self._client.read_holding_registers,
            Function.INPUT: self._client.read_input_registers,
            Function.COIL: self._client.read_coils,
            Function.DISCRETE: self._client.read_discrete_inputs,
        }
        reply = await self._request(lambda: calls[function](address, count=count, device_id=unit))
        if function in (Function.COIL, Function.DISCRETE):
            return list(reply.bits[:count])
        return list(reply.registers)

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        """Write holding registers (FC06 for one register, FC16 for several, as PLCs expect)."""
        if len(values) == 1:
            await self._request(lambda: self._client.write_register(address, values[0], device_id=unit))
        else:
            await self._request(lambda: self._client.write_registers(address, values, device_id=unit))

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        await self._request(lambda: self._client.write_coil(address, value, device_id=unit))

    async def _request(self, make_call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """Run one pymodbus call under the link lock and translate its failure modes.

        The call is built inside the guarded section because pymodbus raises ConnectionException
        synchronously when asked to send on a connection it already knows is gone.
        """
        async with self._lock:
            if not self._client.connected:
                raise LinkDown(f"not connected to {self.describe()}")
            try:
                reply = await make_call()
            except ModbusIOException as exc:
                raise LinkTimeout(str(exc)) from exc
            except (ConnectionException, OSError) as exc:
                raise LinkDown(str(exc) or type(exc).__name__) from exc
            except asyncio.TimeoutError as exc:
                raise LinkTimeout("no answer") from exc
        if reply.isError():
            code = getattr(reply, "exception_code", 0)
            raise ExceptionReply(int(code))
        return reply

    def describe(self) -> str:
        if isinstance(self.endpoint, TcpEndpoint):
            return f"{self.endpoint.host}:{self.endpoint.port}"
        return self.endpoint.port
