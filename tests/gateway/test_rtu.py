"""Modbus RTU end to end: the gateway reads the simulator's heat meter over a pseudo-terminal pair.

socat joins two ptys back to back, like a USB-RS485 adapter wired to a meter: the simulator serves
RTU frames on one end, the gateway's serial client opens the other.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import pytest

from drivers.base import Quality
from drivers.modbus.errors import LinkTimeout
from gateway.app import Gateway
from sim.modbus_server import CommFaults, SerialLine, StationModbusServer
from tests.gateway.conftest import Recorder, demo_station, meter_on_serial, station_config

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed (scripts/bootstrap.sh installs it)")


async def test_heat_meter_is_read_over_rtu_with_the_planned_requests(pty_pair: tuple[str, str]) -> None:
    sim_end, gateway_end = pty_pair
    async with StationModbusServer(demo_station(), port=0, meter_serial=SerialLine(sim_end)) as server:
        config = station_config(server.port, meter_on_serial(gateway_end))
        gateway = Gateway(config)
        meter = gateway.devices["heat_meter"]
        slow = next(g for g in meter._groups if g.name == "slow")  # noqa: SLF001
        await meter.link.connect()
        try:
            server.reset_request_counts()
            samples = {s.tag: s for s in (await meter.poll_group(slow)).samples}
        finally:
            meter.link.close()
    truth = server.measurements.meter
    assert all(s.quality is Quality.GOOD for s in samples.values()), samples
    assert samples["meter_energy_gj"].value == pytest.approx(truth.energy_gj, rel=1e-6)
    assert samples["meter_power"].value == pytest.approx(truth.power_kw, rel=1e-6)
    assert samples["meter_energy_bcd"].value == int(truth.energy_kwh)
    assert server.request_counts() == {(2, 3): meter.planned_requests()["slow"]} == {(2, 3): 1}


async def test_a_silent_rtu_meter_goes_bad_while_the_tcp_plc_carries_on(pty_pair: tuple[str, str]) -> None:
    sim_end, gateway_end = pty_pair
    async with StationModbusServer(demo_station(), port=0, meter_serial=SerialLine(sim_end)) as server:
        def edit(data: dict[str, Any]) -> None:
            meter_on_serial(gateway_end)(data)
            data["groups"] = {"fast": {"interval_s": 0.25}, "slow": {"interval_s": 0.25}}
        gateway = Gateway(station_config(server.port, edit))
        async with Recorder(gateway.bus) as recorder, gateway:
            await recorder.wait_for(lambda: gateway.devices["heat_meter"].online is True, 5, "meter online over RTU")
            server.set_comm_faults(2, CommFaults(offline=True))
            await recorder.wait_for(lambda: gateway.devices["heat_meter"].online is False, 5, "meter lost")
            plc_polls = gateway.devices["plc"].stats.polls
            await recorder.wait_for(lambda: gateway.devices["plc"].stats.polls >= plc_polls + 4, 5, "PLC still polled")
            meter_sample = recorder.latest("meter_power")
            assert meter_sample is not None and meter_sample.quality is Quality.BAD
            assert meter_sample.reason.startswith("timeout")
            plc_sample = recorder.latest("outdoor_temp")
            assert plc_sample is not None and plc_sample.quality is Quality.GOOD
            server.set_comm_faults(2, CommFaults())
            await recorder.wait_for(lambda: gateway.devices["heat_meter"].online is True, 5, "meter back")


async def test_a_unit_id_nobody_has_on_the_line_is_not_answered_and_times_out(pty_pair: tuple[str, str]) -> None:
    """On RS-485 only the addressed device answers: a unit id no meter has gets silence, never an
    exception (that is a TCP gateway's answer), and the master waits its whole timeout."""
    sim_end, gateway_end = pty_pair
    async with StationModbusServer(demo_station(), port=0, meter_serial=SerialLine(sim_end)) as server:
        def edit(data: dict[str, Any]) -> None:
            meter_on_serial(gateway_end)(data)
            data["devices"]["heat_meter"]["unit_id"] = 7
        gateway = Gateway(station_config(server.port, edit))
        meter = gateway.devices["heat_meter"]
        slow = next(g for g in meter._groups if g.name == "slow")  # noqa: SLF001
        await meter.link.connect()
        try:
            server.reset_request_counts()
            started = time.monotonic()
            with pytest.raises(LinkTimeout):  # the poller turns it into bad samples, reason "timeout"
                await meter.poll_group(slow)
            waited = time.monotonic() - started
        finally:
            meter.link.close()
    assert waited >= 0.5 * 0.9, "answered before the meter's 0.5 s timeout"
    assert server.request_counts() == {(7, 3): 1}, "the request reached the line, and only once"
