"""Every reply is checked against its request before anything believes it.

pymodbus (3.16) frames and decodes replies, but lets through what a faulty or hostile device can
send: a reply with another function code is decoded as whatever it claims to be, a byte count that
disagrees with the data or the request gives fewer or more registers than asked, a write's echo is
not compared with the write, and a frame it cannot decode makes asyncio drop the connection while
the request waits for its full timeout. Frames with another transaction or unit id are skipped in
silence, and a non-zero protocol id stalls the receive buffer until the timeout.

So the link gives pymodbus a framer and a decoder that keep a reply's bytes as they came
(``RawReply``) and never skip nor raise, and checks them here, in one place: the MBAP header
(protocol id, length, transaction id, unit id) in ``StrictSocketFramer``, the PDU against the
request in ``parse_reply``. Anything wrong raises ``BadReply`` with a short reason; the codec only
ever sees exactly the registers it asked for.
"""

from __future__ import annotations

import struct

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU

from drivers.modbus.errors import BadReply, ExceptionReply

READS = {1: "bits", 2: "bits", 3: "registers", 4: "registers"}
WHOLE_ECHO = (5, 6, 22)  # single coil, single register, mask write: the reply echoes the whole request
WRITE_MULTIPLE_REGISTERS = 16  # the reply echoes address and quantity
MBAP_SIZE = 7  # transaction id, protocol id, length, unit id
MAX_MBAP_LENGTH = 254  # unit id + a PDU of at most 253 bytes


class RawReply(ModbusPDU):
    """A reply as it came off the wire: its PDU bytes, unparsed, and what was wrong with its frame.

    ``dev_id`` and ``transaction_id`` are always the request's, so pymodbus hands the reply to the
    waiting request instead of dropping it; the real ones, when they differ, are in ``problem``.
    """

    def __init__(self, pdu: bytes, problem: str = "", *, dev_id: int = 0, transaction_id: int = 0) -> None:
        super().__init__(dev_id=dev_id, transaction_id=transaction_id)
        self.pdu = pdu
        self.problem = problem


class RawDecoder(DecodePDU):
    """Keeps the PDU's bytes for ``parse_reply`` instead of guessing from the function code."""

    def __init__(self) -> None:
        super().__init__(False)

    def decode(self, frame: bytes) -> ModbusPDU | None:
        return RawReply(bytes(frame))


class StrictSocketFramer(FramerSocket):
    """Modbus TCP framing that reports a wrong header instead of skipping the frame or stalling."""

    def __init__(self) -> None:
        super().__init__(RawDecoder())

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:  # noqa: N802 - pymodbus's name
        if len(data) < MBAP_SIZE:
            return 0, None
        tid, protocol, length, unit = struct.unpack(">HHHB", data[:MBAP_SIZE])
        if protocol != 0 or not 2 <= length <= MAX_MBAP_LENGTH:
            # No frame boundary can be trusted any more: drop everything received so far.
            problem = f"protocol id {protocol}" if protocol else f"MBAP length {length}"
            return len(data), RawReply(b"", problem, dev_id=exp_devid, transaction_id=exp_tid)
        end = 6 + length
        if len(data) < end:
            return 0, None  # the rest is on its way (or never comes: the request times out)
        problem = ""
        if tid != exp_tid:
            problem = f"transaction id {tid} for {exp_tid}"
        elif unit != exp_devid:
            problem = f"unit id {unit} for {exp_devid}"
        return end, RawReply(data[MBAP_SIZE:end], problem, dev_id=exp_devid, transaction_id=exp_tid)


def request_pdu(request: ModbusPDU) -> bytes:
    """The request's PDU as sent: function code and data."""
    return bytes([request.function_code]) + request.encode()


def parse_reply(request: bytes, reply: bytes) -> list[int] | list[bool] | None:
    """The registers or bits ``reply`` carries if it answers ``request`` (both PDUs), None for a
    write whose echo is right; ``ExceptionReply`` for a well-formed exception, else ``BadReply``."""
    function = request[0]
    if not reply:
        raise BadReply("empty reply")
    if reply[0] == function | 0x80:
        if len(reply) != 2:
            raise BadReply(f"exception reply of {len(reply)} bytes")
        raise ExceptionReply(reply[1])
    if reply[0] != function:
        raise BadReply(f"function code {reply[0]} for {function}")
    if function in READS:
        return _read_data(function, int.from_bytes(request[3:5], "big"), reply)
    echo = request if function in WHOLE_ECHO else request[:5]
    if reply != echo:
        raise BadReply(f"write echo {reply[1:].hex()} for {echo[1:].hex()}")
    return None


def _read_data(function: int, count: int, reply: bytes) -> list[int] | list[bool]:
    if len(reply) < 2:
        raise BadReply("no byte count")
    byte_count, data = reply[1], reply[2:]
    if byte_count != len(data):
        raise BadReply(f"byte count {byte_count} for {len(data)} bytes")
    if READS[function] == "registers":
        if byte_count != 2 * count:
            got = _counted(byte_count // 2, "register") if byte_count % 2 == 0 else f"byte count {byte_count}"
            raise BadReply(f"{got} for {count}")
        return list(struct.unpack(f">{count}H", data))
    if byte_count != (count + 7) // 8:
        raise BadReply(f"byte count {byte_count} for {_counted(count, 'bit')}")
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


def _counted(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
