"""One Modbus transport (a TCP connection or an RS-485 line) and the requests sent over it.

pymodbus does the framing; this module gives the rest of the driver what pymodbus does not:

* typed failures (``LinkTimeout``, ``LinkDown``, ``ExceptionReply``, ``BadReply``) instead of a mix
  of error responses and exceptions, so callers can set the right quality reason;
* every reply checked against its request before it is believed (``drivers.modbus.replies``):
  function code, byte and register/bit count, write echo, and on TCP the MBAP header (protocol id,
  length, transaction id, unit id);
* a connection that is reset after a reply it could not believe or a request that timed out, and
  reopened before the next request, so a stale or half-read reply can never be taken for the
  answer to a later request;
* one request at a time per link, because an RS-485 line is a shared wire and a serial-to-Ethernet
  converter usually is too;
* no hidden reconnect loop: pymodbus's own is disabled so the poller decides when to retry, with
  backoff and jitter, and knows the device is down meanwhile. The one reopen after a reset is a
  single attempt; if it fails, the request fails with ``LinkDown``;
* failures that say why in a few stable words (``connection_refused``, ``no_such_port``,
  ``permission_denied``, ``no answer within 2 s``), for the operator; pymodbus's own text
  ("Modbus Error: [Input/Output] No response received ...") goes to the debug log only. pymodbus
  turns a failed connect into ``False`` and drops the operating system's error (its transport
  catches the ``OSError`` of ``create_connection`` or of opening the serial port, and only logs
  it), so the link wraps the transport's connection factory to keep that error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest, WriteSingleCoilRequest
from pymodbus.pdu.register_message import (
    MaskWriteRegisterRequest,
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from drivers.modbus.errors import (
    EXCEPTION_NAMES,
    ILLEGAL_FUNCTION,
    BadReply,
    ExceptionReply,
    LinkDown,
    LinkError,
    LinkTimeout,
    os_cause,
)
from drivers.modbus.points import Function
from drivers.modbus.replies import RawDecoder, RawReply, StrictSocketFramer, parse_reply, request_pdu
from gateway.logs import kv

__all__ = [
    "EXCEPTION_NAMES", "BadReply", "ExceptionReply", "LinkDown", "LinkError", "LinkTimeout", "ModbusLink",
    "SerialEndpoint", "TcpEndpoint",
]

log = logging.getLogger(__name__)

_READ_REQUESTS = {
    Function.HOLDING: ReadHoldingRegistersRequest,
    Function.INPUT: ReadInputRegistersRequest,
    Function.COIL: ReadCoilsRequest,
    Function.DISCRETE: ReadDiscreteInputsRequest,
}


class _ClosedByDevice(ConnectionException):
    """The device closed the connection while a request waited for its reply."""


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
        self._in_flight = False
        self._reopen = False  # the link reset itself: reopen before the next request
        self._patience_s = timeout_s * (1 + retries)
        self._connect_timeout_s = timeout_s
        self._connect_error: OSError | None = None  # why the last connect failed, as the OS said
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(endpoint, TcpEndpoint):
            self._client = AsyncModbusTcpClient(
                endpoint.host, port=endpoint.port, timeout=timeout_s, retries=retries, reconnect_delay=0,
                trace_connect=self._connection_changed,
            )
            self._client.ctx.framer = StrictSocketFramer()
        else:
            self._client = AsyncModbusSerialClient(
                endpoint.port, baudrate=endpoint.baudrate, parity=endpoint.parity,
                stopbits=endpoint.stopbits, timeout=timeout_s, retries=retries, reconnect_delay=0,
                trace_connect=self._connection_changed,
            )
            self._client.ctx.framer.decoder = RawDecoder()
        self._keep_connect_errors()

    def _keep_connect_errors(self) -> None:
        """Remember the ``OSError`` of the transport's connection factory (``create_connection``,
        opening the serial port) before pymodbus swallows it into ``connect() -> False``."""
        transport = self._client.ctx
        create = transport.call_create

        async def create_keeping_error() -> Any:
            try:
                return await create()
            except OSError as exc:
                self._connect_error = exc
                raise

        transport.call_create = create_keeping_error

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the connection; raise ``LinkDown`` with the cause (``connection_refused``,
        ``no_such_port``...) when it cannot be opened, ``LinkTimeout`` when it is not made in time."""
        async with self._lock:
            if not self._client.connected:
                await self._open()

    async def _open(self) -> None:
        self._connect_error = None
        try:
            ok = await self._client.connect()
        except (OSError, ModbusException) as exc:
            raise self._failure("connect", exc, otherwise="cannot connect") from exc
        if not ok:
            error = self._connect_error
            if error is None:  # pymodbus's own wait for the connection ran out
                log.debug("connect timed out", extra=kv(link=self.describe()))
                raise LinkTimeout(f"no connection within {self._connect_timeout_s:g} s")
            raise self._failure("connect", error, otherwise="cannot connect") from error
        self._reopen = False

    def _failure(self, doing: str, exc: BaseException, *, otherwise: str) -> LinkError:
        """The typed, short failure for an OS error (``otherwise`` for a library one); the full
        text goes to the debug log."""
        log.debug("%s failed", doing, extra=kv(link=self.describe(), error=type(exc).__name__, detail=str(exc)))
        if isinstance(exc, OSError):
            cause = os_cause(exc)
            return LinkTimeout(cause) if cause == "timeout" else LinkDown(cause)
        return LinkDown(otherwise)

    def close(self) -> None:
        self._reopen = False
        self._client.close()

    def _reset(self) -> None:
        """Drop a connection whose conversation is in an unknown state; reopen at the next request."""
        self._client.close()
        self._reopen = True

    def _connection_changed(self, connected: bool) -> None:
        """pymodbus leaves a request waiting for its whole timeout when the device closes the
        connection mid-reply; fail it at once instead."""
        waiting = self._client.ctx.response_future
        if not connected and self._in_flight and not waiting.done():
            waiting.set_exception(_ClosedByDevice())

    async def read(self, unit: int, function: Function, address: int, count: int) -> list[int] | list[bool]:
        """Read exactly ``count`` registers (or bits) starting at ``address``."""
        data = await self._request(_READ_REQUESTS[function](address=address, count=count, dev_id=unit))
        assert data is not None  # parse_reply returns data for every read
        return data

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        """Write holding registers (FC06 for one register, FC16 for several, as PLCs expect)."""
        if len(values) == 1:
            await self._request(WriteSingleRegisterRequest(address=address, registers=values, dev_id=unit))
        else:
            await self._request(WriteMultipleRegistersRequest(address=address, registers=values, dev_id=unit))

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        """Write one coil (FC05)."""
        await self._request(WriteSingleCoilRequest(address=address, bits=[value], dev_id=unit))

    async def write_mask(self, unit: int, address: int, and_mask: int, or_mask: int) -> None:
        """Change bits of one holding register in place (FC22, Mask Write Register).

        A device without FC22 answers exception 1; that fails the write with a reason saying so.
        There is deliberately no fallback to read, modify and write the register: the PLC may
        change its other bits in between, and we would write back a stale copy of them.
        """
        try:
            await self._request(MaskWriteRegisterRequest(address=address, and_mask=and_mask, or_mask=or_mask,
                                                         dev_id=unit))
        except ExceptionReply as exc:
            if exc.code != ILLEGAL_FUNCTION:
                raise
            raise ExceptionReply(exc.code, "the device does not support Mask Write Register (function 22), "
                                           "the only safe way to write one bit of a register; nothing written") from exc

    async def _request(self, request: ModbusPDU) -> list[int] | list[bool] | None:
        """Send one request under the link lock, check its reply, and translate the failure modes."""
        sent = request_pdu(request)
        async with self._lock:
            if not self._client.connected:
                if not self._reopen:
                    raise LinkDown(f"not connected to {self.describe()}")
                await self._open()
            self._in_flight = True
            try:
                # execute() raises ConnectionException synchronously on a connection it knows is gone.
                reply = await self._client.execute(False, request)
            except (ModbusIOException, asyncio.TimeoutError) as exc:
                self._reset()
                log.debug("request unanswered", extra=kv(link=self.describe(), detail=str(exc)))
                raise LinkTimeout(f"no answer within {self._patience_s:g} s") from exc
            except _ClosedByDevice as exc:
                self._reset()
                raise LinkDown("connection closed by the device") from exc
            except (ConnectionException, OSError) as exc:
                self._reset()
                raise self._failure("request", exc, otherwise="connection dropped") from exc
            finally:
                self._in_flight = False
            try:
                if not isinstance(reply, RawReply):
                    raise BadReply(f"unexpected reply {type(reply).__name__}")
                if reply.problem:
                    raise BadReply(reply.problem)
                return parse_reply(sent, reply.pdu)
            except BadReply:
                self._reset()
                raise

    def describe(self) -> str:
        if isinstance(self.endpoint, TcpEndpoint):
            return f"{self.endpoint.host}:{self.endpoint.port}"
        return self.endpoint.port
