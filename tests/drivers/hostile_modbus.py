"""A hostile Modbus TCP device for tests: raw sockets, MBAP framing by hand, replies chosen by the test.

It answers honestly from its own registers (functions 1-6 and 16, exception 1 for the others)
until a test arms a ``Trap``: the first request the trap's ``when`` accepts gets the trap's
``reply`` instead, a script of raw bytes to send, pauses and a ``CLOSE``. Nothing here goes through
pymodbus, so a reply can be anything a broken or malicious device could send: a wrong function
code, byte count, transaction or unit id, an MBAP header that lies, garbage, half a frame.

Every connection handler is a task the server owns and cancels on ``stop()``, and every read is
bounded by the connection's life, so a test never leaves a socket or a task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType


class _Close:
    def __repr__(self) -> str:
        return "CLOSE"


CLOSE = _Close()
"""In a reply script: close the connection here."""

Step = bytes | float | _Close  # bytes to send, seconds to wait, or CLOSE


@dataclass(frozen=True, slots=True)
class Request:
    """One request as received: its MBAP header and PDU."""

    tid: int
    unit: int
    pdu: bytes

    @property
    def function(self) -> int:
        return self.pdu[0]

    @property
    def address(self) -> int:
        return int.from_bytes(self.pdu[1:3], "big")

    @property
    def count(self) -> int:
        """Quantity of a read or a multiple write; 1 for a single write."""
        return 1 if self.function in (5, 6) else int.from_bytes(self.pdu[3:5], "big")

    def frame(self, pdu: bytes, *, tid: int | None = None, protocol: int = 0, unit: int | None = None,
              length: int | None = None) -> bytes:
        """``pdu`` in an MBAP header: this request's transaction and unit id unless told otherwise,
        and the true length unless ``length`` lies."""
        return struct.pack(">HHHB", self.tid if tid is None else tid, protocol,
                           len(pdu) + 1 if length is None else length,
                           self.unit if unit is None else unit) + pdu


Craft = Callable[[Request, bytes], Sequence[Step]]
"""Given the request and the honest reply's PDU, the script to play instead."""


@dataclass
class Trap:
    when: Callable[[Request, list[Request]], bool]  # (request, requests seen since armed)
    reply: Craft
    seen: list[Request] = field(default_factory=list)
    sprung: asyncio.Event = field(default_factory=asyncio.Event)


class HostileModbusServer:
    """``async with HostileModbusServer() as server:`` serves on ``server.port`` (loopback)."""

    def __init__(self, unit: int = 1) -> None:
        self.unit = unit
        self.registers = {3: dict[int, int](), 4: dict[int, int]()}  # holding, input
        self.bits = {1: dict[int, bool](), 2: dict[int, bool]()}  # coils, discrete inputs
        self.requests: list[Request] = []
        self.connections = 0
        self.port = 0
        self._trap: Trap | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HostileModbusServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def arm(self, when: Callable[[Request, list[Request]], bool], reply: Craft) -> Trap:
        """The first request ``when`` accepts from now on gets ``reply``; once."""
        self._trap = Trap(when, reply)
        return self._trap

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _protocol, length, unit = struct.unpack(">HHHB", header)
                request = Request(tid, unit, await reader.readexactly(max(0, length - 1)))
                self.requests.append(request)
                for step in self._script(request):
                    if isinstance(step, _Close):
                        return
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        writer.write(step)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    def _script(self, request: Request) -> Sequence[Step]:
        honest = self.honest(request)
        trap = self._trap
        if trap is not None:
            if trap.when(request, trap.seen):
                self._trap = None
                trap.sprung.set()
                return trap.reply(request, honest)
            trap.seen.append(request)
        return [request.frame(honest)]

    def honest(self, request: Request) -> bytes:
        """The PDU a correct device would answer ``request`` with."""
        fc, pdu = request.function, request.pdu
        if fc in (3, 4):
            values = [self.registers[fc].get(request.address + i, 0) for i in range(request.count)]
            return bytes([fc, 2 * len(values)]) + b"".join(v.to_bytes(2, "big") for v in values)
        if fc in (1, 2):
            bits = [self.bits[fc].get(request.address + i, False) for i in range(request.count)]
            packed = bytes(sum(1 << j for j, bit in enumerate(bits[i:i + 8]) if bit)
                           for i in range(0, len(bits), 8))
            return bytes([fc, len(packed)]) + packed
        if fc == 6:
            self.registers[3][request.address] = int.from_bytes(pdu[3:5], "big")
            return pdu
        if fc == 5:
            self.bits[1][request.address] = pdu[3:5] == b"\xff\x00"
            return pdu
        if fc == 16:
            for i in range(request.count):
                self.registers[3][request.address + i] = int.from_bytes(pdu[6 + 2 * i:8 + 2 * i], "big")
            return pdu[:5]
        return bytes([fc | 0x80, 1])
