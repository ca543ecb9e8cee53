"""A hostile device never stops the station (issue #16).

One gateway polls the simulated station (PLC and meter, real Modbus TCP on loopback) and a hostile
device (``tests.drivers.hostile_modbus``: raw sockets, replies chosen here). For every crafted
reply in the corpus, the outcome is clear (the affected tags bad with a short reason, or the write
answered failed with its reason) and nothing else stopped: the hostile device is read again, the
station's PLC keeps being polled, and a later write to the PLC is done and read back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from drivers.base import Quality
from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.control.loader import load_controller_config
from gateway.samples import Sample, SampleBatch
from sim.modbus_server import StationModbusServer
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML
from tests.drivers.hostile_modbus import CLOSE, Craft, HostileModbusServer, Request, Step
from tests.gateway.conftest import Recorder, station_config

TIMEOUT_S = 0.5  # the hostile device's timeout_s (retries: 0)
WAIT_S = 5.0  # bound of every wait in these tests

HOSTILE_TAGS: dict[str, dict[str, Any]] = {
    "h_temp": {"function": "input", "address": 0, "type": "int16", "scale": 0.1, "group": "fast"},
    "h_flow": {"function": "input", "address": 1, "scale": 0.1, "group": "fast"},
    "h_pump": {"function": "coil", "address": 0, "group": "fast"},
    "h_alarm": {"function": "discrete", "address": 0, "group": "fast"},
    # Polled once at start, then only the write path reads it: the trap hits the write's own requests.
    "h_setpoint": {"function": "holding", "address": 10, "type": "int16", "scale": 0.1, "group": "rare",
                   "writable": {"min": 30, "max": 90, "max_step": 5}},
}
FUNCTION_OF = {"h_temp": 4, "h_pump": 1, "h_alarm": 2}
BLOCK = {"h_temp": {"h_temp", "h_flow"}, "h_pump": {"h_pump"}, "h_alarm": {"h_alarm"}}  # the tags of its block


@dataclass
class Rig:
    gateway: Gateway
    recorder: Recorder
    hostile: HostileModbusServer
    station: StationModbusServer

    def samples(self, tag: str, since: int = 0) -> list[tuple[int, SampleBatch, Sample]]:
        return [(i, batch, sample) for i, (_, batch) in enumerate(self.recorder.items[since:], since)
                if isinstance(batch, SampleBatch) for sample in batch.samples if sample.tag == tag]

    async def first(self, tag: str, since: int, predicate: Callable[[Sample], bool],
                    what: str) -> tuple[int, SampleBatch, Sample]:
        found: list[tuple[int, SampleBatch, Sample]] = []

        def seen() -> bool:
            found[:] = [s for s in self.samples(tag, since) if predicate(s[2])][:1]
            return bool(found)

        await self.recorder.wait_for(seen, WAIT_S, what)
        return found[0]

    async def assert_the_station_goes_on(self, since: int) -> None:
        """The PLC is polled after ``since`` and a write to it is done with its read-back."""
        await self.first("outdoor_temp", since, lambda s: s.quality is Quality.GOOD, "the PLC polled again")
        held = self.station.station.plc.supply_setpoint_c
        target = round(held + (1.0 if held < 80 else -1.0), 1)
        result = await asyncio.wait_for(self.gateway.writes.write("supply_setpoint", target, origin="test"), WAIT_S)
        assert result.accepted, result
        assert result.readback == pytest.approx(target)
        assert self.station.station.plc.supply_setpoint_c == pytest.approx(target)


def with_hostile_device(station_port: int, hostile: HostileModbusServer) -> GatewayConfig:
    """The demo station's configuration on ``station_port``, fast groups, the PLC setpoint writable
    as often as a test likes, and the hostile device (seeded with honest values) next to it."""
    def edit(data: dict[str, Any]) -> None:
        data.pop("mqtt")
        data["groups"] = {"fast": {"interval_s": 0.2}, "slow": {"interval_s": 0.5}, "rare": {"interval_s": 600}}
        data["devices"]["plc"]["tags"]["supply_setpoint"]["writable"]["min_interval_s"] = 0
        data["devices"]["hostile"] = {
            "protocol": "modbus_tcp", "host": "127.0.0.1", "port": hostile.port, "unit_id": 1,
            "timeout_s": TIMEOUT_S, "retries": 0, "backoff": {"initial_s": 0.1, "max_s": 0.3},
            "tags": HOSTILE_TAGS,
        }

    hostile.registers[4].update({0: 215, 1: 33})
    hostile.registers[3][10] = 500
    hostile.bits[1][0] = hostile.bits[2][0] = True
    return station_config(station_port, edit)


@pytest.fixture
async def rig(station_server: StationModbusServer) -> AsyncIterator[Rig]:
    async with HostileModbusServer() as hostile:
        gateway = Gateway(with_hostile_device(station_server.port, hostile))
        async with Recorder(gateway.bus) as recorder, gateway:
            rig = Rig(gateway, recorder, hostile, station_server)
            for tag in ("h_temp", "h_pump", "h_alarm", "h_setpoint", "outdoor_temp"):
                await rig.first(tag, 0, lambda s: s.quality is Quality.GOOD, f"{tag} read")
            yield rig


def reply(*steps: Step) -> Craft:
    """A fixed script."""
    return lambda request, honest: steps


def framed(pdu: bytes, **header: int) -> Craft:
    """``pdu`` (raw bytes) in this request's MBAP header, with ``header`` fields overridden."""
    return lambda request, honest: [request.frame(pdu, **header)]


def as_sent(make: Callable[[Request, bytes], bytes]) -> Craft:
    return lambda request, honest: [make(request, honest)]


def in_pieces(size: int, pause_s: float = 0.02) -> Craft:
    """The honest reply, split into TCP segments of ``size`` bytes."""
    def craft(request: Request, honest: bytes) -> Sequence[Step]:
        frame = request.frame(honest)
        steps: list[Step] = []
        for i in range(0, len(frame), size):
            steps += [frame[i:i + size], pause_s]
        return steps
    return craft


# (id, tag whose block gets the reply, the reply, the reason its tags get, or "good")
READ_CORPUS: list[tuple[str, str, Craft, str]] = [
    ("zero_registers", "h_temp", framed(b"\x04\x00"), "bad_reply: 0 registers for 2"),
    ("fewer_registers", "h_temp", framed(b"\x04\x02\x00\xd7"), "bad_reply: 1 register for 2"),
    ("more_registers", "h_temp", framed(b"\x04\x06\x00\xd7\x00\x21\x00\x00"), "bad_reply: 3 registers for 2"),
    ("byte_count_above_data", "h_temp", framed(b"\x04\x04\x00\xd7"), "bad_reply: byte count 4 for 2 bytes"),
    ("byte_count_below_data", "h_temp", framed(b"\x04\x02\x00\xd7\x00\x21"), "bad_reply: byte count 2 for 4 bytes"),
    ("odd_byte_count", "h_temp", framed(b"\x04\x03\x00\xd7\x00"), "bad_reply: byte count 3 for 2"),
    ("no_byte_count", "h_temp", framed(b"\x04"), "bad_reply: no byte count"),
    ("wrong_function_code", "h_temp", framed(b"\x03\x04\x00\xd7\x00\x21"), "bad_reply: function code 3 for 4"),
    ("a_write_echo_for_a_read", "h_temp", framed(b"\x06\x00\x00\x00\xd7"), "bad_reply: function code 6 for 4"),
    ("unknown_function_code", "h_temp", framed(b"\x41\x04\x00\xd7\x00\x21"), "bad_reply: function code 65 for 4"),
    ("function_code_zero", "h_temp", framed(b"\x00\x04\x00\xd7\x00\x21"), "bad_reply: function code 0 for 4"),
    ("exception_for_another_function", "h_temp", framed(b"\x83\x02"), "bad_reply: function code 131 for 4"),
    ("exception_device_failure", "h_temp", framed(b"\x84\x04"), "exception: exception 4 (device failure)"),
    ("exception_illegal_function", "h_temp", framed(b"\x84\x01"), "exception: exception 1 (illegal function)"),
    ("exception_unknown_code", "h_temp", framed(b"\x84\x63"), "exception: exception 99 (unknown)"),
    ("exception_too_long", "h_temp", framed(b"\x84\x04\x00"), "bad_reply: exception reply of 3 bytes"),
    ("exception_without_code", "h_temp", framed(b"\x84"), "bad_reply: exception reply of 1 bytes"),
    ("wrong_transaction_id", "h_temp", as_sent(lambda r, h: r.frame(h, tid=r.tid + 7)), "bad_reply: transaction id"),
    ("transaction_id_zero", "h_temp", as_sent(lambda r, h: r.frame(h, tid=0)), "bad_reply: transaction id 0 for"),
    ("stale_reply_before_the_right_one", "h_temp", as_sent(lambda r, h: r.frame(h, tid=r.tid - 1) + r.frame(h)),
     "bad_reply: transaction id"),
    ("wrong_unit_id", "h_temp", as_sent(lambda r, h: r.frame(h, unit=7)), "bad_reply: unit id 7 for 1"),
    ("unit_id_zero", "h_temp", as_sent(lambda r, h: r.frame(h, unit=0)), "bad_reply: unit id 0 for 1"),
    ("protocol_id_not_zero", "h_temp", as_sent(lambda r, h: r.frame(h, protocol=1)), "bad_reply: protocol id 1"),
    ("protocol_id_ffff", "h_temp", as_sent(lambda r, h: r.frame(h, protocol=0xFFFF)), "bad_reply: protocol id 65535"),
    ("mbap_length_zero", "h_temp", as_sent(lambda r, h: r.frame(h, length=0)), "bad_reply: MBAP length 0"),
    ("mbap_length_only_the_unit", "h_temp", as_sent(lambda r, h: r.frame(b"", length=1)), "bad_reply: MBAP length 1"),
    ("mbap_length_beyond_a_frame", "h_temp", as_sent(lambda r, h: r.frame(h, length=1000)), "bad_reply: MBAP length 1000"),
    ("mbap_length_too_short", "h_temp", as_sent(lambda r, h: r.frame(h, length=3)), "bad_reply: byte count 4 for 0 bytes"),
    ("mbap_length_too_long", "h_temp", as_sent(lambda r, h: r.frame(h, length=len(h) + 40)), "timeout: no answer within 0.5 s"),
    ("garbage", "h_temp", reply(b"\xde\xad\xbe\xef\x00\x05\x01\x04\x02\x00\xd7"), "bad_reply: protocol id 48879"),
    ("garbage_shorter_than_a_header", "h_temp", reply(b"\x00\x01\x00"), "timeout: no answer within 0.5 s"),
    ("truncated_frame", "h_temp", as_sent(lambda r, h: r.frame(h)[:9]), "timeout: no answer within 0.5 s"),
    ("connection_closed_mid_reply", "h_temp", lambda r, h: [r.frame(h)[:9], 0.05, CLOSE],
     "connection_lost: connection closed by the device"),
    ("connection_closed_instead_of_a_reply", "h_temp", reply(CLOSE), "connection_lost: connection closed by the device"),
    ("a_reply_that_never_comes", "h_temp", reply(), "timeout: no answer within 0.5 s"),
    ("a_reply_after_the_timeout", "h_temp", lambda r, h: [0.8, r.frame(h)], "timeout: no answer within 0.5 s"),
    ("reply_split_byte_by_byte", "h_temp", in_pieces(1), "good"),
    ("reply_split_inside_the_header", "h_temp", in_pieces(4, 0.05), "good"),
    ("unsolicited_extra_reply", "h_temp", as_sent(lambda r, h: r.frame(h) + r.frame(h)), "good"),
    ("garbage_after_the_reply", "h_temp", as_sent(lambda r, h: r.frame(h) + b"\x13\x37\x00\x00\xff"), "good"),
    ("coils_byte_count_zero", "h_pump", framed(b"\x01\x00"), "bad_reply: byte count 0 for 1 bit"),
    ("coils_byte_count_too_large", "h_pump", framed(b"\x01\x02\x01\x00"), "bad_reply: byte count 2 for 1 bit"),
    ("coils_byte_count_without_data", "h_pump", framed(b"\x01\x01"), "bad_reply: byte count 1 for 0 bytes"),
    ("coils_answered_with_registers", "h_pump", framed(b"\x03\x02\x00\x01"), "bad_reply: function code 3 for 1"),
    ("discrete_answered_as_coils", "h_alarm", framed(b"\x01\x01\x01"), "bad_reply: function code 1 for 2"),
    ("discrete_byte_count_too_large", "h_alarm", framed(b"\x02\x03\x01\x00\x00"), "bad_reply: byte count 3 for 1 bit"),
    ("discrete_illegal_address", "h_alarm", framed(b"\x82\x02"), "exception: exception 2 (illegal data address)"),
]


@pytest.mark.parametrize(("tag", "craft", "expected"), [c[1:] for c in READ_CORPUS], ids=[c[0] for c in READ_CORPUS])
async def test_a_hostile_reply_to_a_read_marks_its_block_and_nothing_else_stops(
    rig: Rig, tag: str, craft: Craft, expected: str,
) -> None:
    mark = len(rig.recorder.items)
    function = FUNCTION_OF[tag]
    trap = rig.hostile.arm(lambda request, seen: request.function == function, craft)
    await asyncio.wait_for(trap.sprung.wait(), WAIT_S)
    if expected == "good":
        at, _, sample = await rig.first(tag, mark, lambda s: True, f"{tag} read after the reply")
        await rig.first(tag, at + 1, lambda s: True, f"{tag} read again")
        assert all(s.quality is Quality.GOOD for _, _, s in rig.samples(tag, mark)), rig.samples(tag, mark)
    else:
        at, batch, sample = await rig.first(tag, mark, lambda s: s.quality is not Quality.GOOD, f"{tag} bad")
        assert sample.reason.startswith(expected), sample
        assert sample.value is None
        if expected.startswith(("bad_reply", "exception")):
            # Only that block: the other blocks of the same poll were read (after it, on a reopened
            # connection) and are good.
            others = [s for s in batch.samples if s.tag not in BLOCK[tag]]
            assert others and all(s.quality is Quality.GOOD for s in others), others
        # The hostile device is read again, and believed when it answers right.
        await rig.first(tag, at + 1, lambda s: s.quality is Quality.GOOD, f"{tag} good again")
    await rig.assert_the_station_goes_on(at + 1)


def readback(request: Request, seen: list[Request]) -> bool:
    return request.function == 3 and any(r.function == 6 for r in seen)


def pre_read(request: Request, seen: list[Request]) -> bool:
    return request.function == 3 and not any(r.function == 6 for r in seen)


def the_write(request: Request, seen: list[Request]) -> bool:
    return request.function == 6


# (id, which request of the write gets the reply, the reply, how the write's reason starts)
WRITE_CORPUS: list[tuple[str, Callable[[Request, list[Request]], bool], Craft, str]] = [
    ("readback_zero_registers", readback, framed(b"\x03\x00"), "read-back failed: bad_reply: 0 registers for 1"),
    ("readback_two_registers", readback, framed(b"\x03\x04\x02\x08\x00\x00"),
     "read-back failed: bad_reply: 2 registers for 1"),
    ("readback_short", readback, framed(b"\x03\x02\x02"), "read-back failed: bad_reply: byte count 2 for 1 bytes"),
    ("readback_wrong_byte_count", readback, framed(b"\x03\x04\x02\x08"),
     "read-back failed: bad_reply: byte count 4 for 2 bytes"),
    ("readback_wrong_function_code", readback, framed(b"\x04\x02\x02\x08"),
     "read-back failed: bad_reply: function code 4 for 3"),
    ("readback_wrong_transaction_id", readback, as_sent(lambda r, h: r.frame(h, tid=r.tid + 1)),
     "read-back failed: bad_reply: transaction id"),
    ("readback_exception", readback, framed(b"\x83\x04"), "read-back failed: exception 4 (device failure)"),
    ("readback_never_comes", readback, reply(), "read-back failed: no answer within 0.5 s"),
    ("readback_connection_closed", readback, reply(CLOSE), "read-back failed: connection closed by the device"),
    ("readback_another_value", readback, framed(b"\x03\x02\x01\xf4"), "read-back mismatch: device holds 50.0"),
    ("write_echo_another_value", the_write, as_sent(lambda r, h: r.frame(h[:3] + b"\x00\x00")),
     "write failed: bad_reply: write echo 000a0000 for 000a0208"),
    ("write_echo_another_address", the_write, as_sent(lambda r, h: r.frame(b"\x06\x00\x0b" + h[3:])),
     "write failed: bad_reply: write echo 000b0208 for 000a0208"),
    ("write_echo_truncated", the_write, as_sent(lambda r, h: r.frame(h[:3])), "write failed: bad_reply: write echo 000a for"),
    ("write_answered_as_fc16", the_write, framed(b"\x10\x00\x0a\x00\x01"), "write failed: bad_reply: function code 16 for 6"),
    ("write_illegal_value", the_write, framed(b"\x86\x03"), "write failed: exception 3 (illegal data value)"),
    ("write_never_answered", the_write, reply(), "write failed: no answer within 0.5 s"),
    ("write_connection_closed", the_write, reply(CLOSE), "write failed: connection closed by the device"),
    ("max_step_read_zero_registers", pre_read, framed(b"\x03\x00"),
     "current value unreadable: bad_reply: 0 registers for 1"),
    ("max_step_read_wrong_function_code", pre_read, framed(b"\x04\x02\x01\xf4"),
     "current value unreadable: bad_reply: function code 4 for 3"),
    ("max_step_read_never_answered", pre_read, reply(), "device unreachable: no answer within 0.5 s"),
]


@pytest.mark.parametrize(("when", "craft", "expected"), [c[1:] for c in WRITE_CORPUS], ids=[c[0] for c in WRITE_CORPUS])
async def test_a_hostile_reply_to_a_write_fails_that_write_at_once_and_the_queue_goes_on(
    rig: Rig, when: Callable[[Request, list[Request]], bool], craft: Craft, expected: str,
) -> None:
    trap = rig.hostile.arm(when, craft)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await asyncio.wait_for(rig.gateway.writes.write("h_setpoint", 52.0, origin="test"), WAIT_S)
    assert trap.sprung.is_set()
    assert not result.accepted and result.reason.startswith(expected), result
    assert loop.time() - started < TIMEOUT_S + 1.0, "the write was not answered at once"
    mark = len(rig.recorder.items)
    await rig.assert_the_station_goes_on(mark)
    # The hostile device itself takes a good write again once it answers right.
    again = await asyncio.wait_for(rig.gateway.writes.write("h_setpoint", 51.0, origin="test"), WAIT_S)
    assert again.accepted and again.readback == pytest.approx(51.0), again


async def test_the_controller_keeps_writing_to_the_plc_after_hostile_replies_to_other_writes(
    station_server: StationModbusServer, tmp_path: Path,
) -> None:
    data = yaml.safe_load(CONTROLLER_YAML.read_text())
    section = data["controller"]
    section["cycle_s"] = 1
    section["season"]["override"] = "heating"  # whatever the wall clock's date and time of day
    section["circuits"]["radiators"]["comfort"].update(day_start="00:00", day_end="23:59:59")
    section["circuits"]["radiators"].update(ramp_up_k_per_h=600, ramp_down_k_per_h=600,
                                            curve=str(CONFIG_DIR / "curves" / "radiators-75-50.yaml"))
    (tmp_path / "controller.yaml").write_text(yaml.safe_dump(data))
    station_server.station.plc.supply_setpoint_c = 40.0  # the controller ramps it up, a write a cycle
    async with HostileModbusServer() as hostile:
        gateway = Gateway(with_hostile_device(station_server.port, hostile),
                          controller=load_controller_config(tmp_path / "controller.yaml"))
        task = gateway.controller
        assert task is not None
        async with Recorder(gateway.bus) as recorder, gateway:
            def written() -> float | None:
                state = task.state
                return state.circuits[0].written_c if state is not None else None

            await recorder.wait_for(lambda: written() is not None, WAIT_S, "the controller's first write")
            for when, craft in ((readback, framed(b"\x03\x00")), (readback, framed(b"\x04\x02\x01\xf4")),
                                (the_write, reply()), (readback, reply(CLOSE)), (pre_read, framed(b"\x03\x00"))):
                trap = hostile.arm(when, craft)
                result = await asyncio.wait_for(gateway.writes.write("h_setpoint", 51.0, origin="test"), WAIT_S)
                assert trap.sprung.is_set() and not result.accepted, result
            before = written()
            await recorder.wait_for(lambda: written() not in (None, before), WAIT_S, "a later controller write")
            value = written()
            state = task.state
            assert state is not None and state.circuits[0].write_status == "written"
            assert value == pytest.approx(station_server.station.plc.supply_setpoint_c, abs=0.051)


async def test_a_block_whose_replies_stay_bad_is_logged_once_until_it_reads_right(
    rig: Rig, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="drivers.modbus.poller"):
        for _ in range(3):  # three polls in a row get a reply with the wrong function code
            trap = rig.hostile.arm(lambda request, seen: request.function == 4, framed(b"\x03\x04\x00\xd7\x00\x21"))
            await asyncio.wait_for(trap.sprung.wait(), WAIT_S)
        await rig.first("h_temp", len(rig.recorder.items), lambda s: s.quality is Quality.GOOD, "h_temp good again")
        trap = rig.hostile.arm(lambda request, seen: request.function == 4, framed(b"\x04\x00"))
        await asyncio.wait_for(trap.sprung.wait(), WAIT_S)
        await rig.first("h_temp", len(rig.recorder.items), lambda s: s.quality is Quality.GOOD, "h_temp good again")
    warnings = [r for r in caplog.records if r.name == "drivers.modbus.poller" and "does not answer the request" in r.getMessage()]
    assert [r.fields["reason"] for r in warnings] == [  # type: ignore[attr-defined]
        "function code 3 for 4", "0 registers for 2"]
    assert all(r.fields["device"] == "hostile" and r.fields["start"] == 0 for r in warnings)  # type: ignore[attr-defined]
