"""Modbus acquisition against the simulated station over real loopback sockets."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from drivers.base import Quality
from drivers.modbus.poller import DevicePoller
from drivers.modbus.tagmap import make_link
from gateway.app import Gateway
from gateway.config import GatewayConfig
from sim.modbus_server import CommFaults, ExceptionRange, StationModbusServer
from tests.gateway.conftest import Recorder, demo_station, free_port, station_config

READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
WRITE_FCS = (5, 6, 15, 16)


async def poll_every_group_once(poller: DevicePoller) -> dict[str, Any]:
    await poller.link.connect()
    values = {}
    for group in poller._groups:  # noqa: SLF001 - the test drives one poll of each group itself
        batch = await poller.poll_group(group)
        values.update({s.tag: s for s in batch.samples})
    return values


async def test_whole_map_is_read_with_the_planned_number_of_requests(station_server: StationModbusServer) -> None:
    config = station_config(station_server.port)
    gateway = Gateway(config)
    plc, meter = gateway.devices["plc"], gateway.devices["heat_meter"]
    # The planner's optimum for config/station.yaml, worked out by hand: PLC fast = inputs 0-17 +
    # holding 100; slow = inputs 14-31 (the gap 17-19 is cheaper read than skipped) + holding
    # 101-102 + coils 0-1; the meter's 17 registers are contiguous.
    assert plc.planned_requests() == {"fast": 2, "slow": 3}
    assert meter.planned_requests() == {"slow": 1}

    station_server.reset_request_counts()
    try:
        samples = await poll_every_group_once(plc) | await poll_every_group_once(meter)
    finally:
        plc.link.close()
        meter.link.close()

    counts = station_server.request_counts()
    assert sum(counts.values()) == 6
    for unit, poller in ((1, plc), (2, meter)):
        expected: dict[int, int] = {}
        for group in poller._groups:  # noqa: SLF001
            for block in group.blocks:
                expected[block.function.value] = expected.get(block.function.value, 0) + 1
        assert {fc: n for (u, fc), n in counts.items() if u == unit} == expected

    assert len(samples) == sum(len(d.tags) for d in config.devices.values())
    truth = station_server.measurements  # the snapshot the server encoded
    assert samples["outdoor_temp"].value == pytest.approx(truth.outdoor_c, abs=0.051)
    assert samples["secondary_supply_temp"].value == pytest.approx(truth.secondary_supply_c, abs=0.051)
    assert samples["meter_energy_gj"].value == pytest.approx(truth.meter.energy_gj, rel=1e-6)
    assert samples["meter_energy_bcd"].value == samples["meter_energy_kwh"].value
    assert samples["pump_running"].value is truth.pump_running
    for tag, sample in samples.items():
        if tag.startswith("room_") and tag.endswith("_temp"):  # a sensor may not have reported yet
            assert sample.quality is Quality.GOOD or sample.reason == "no_value", sample
        else:
            assert sample.quality is Quality.GOOD, sample


def small_config(devices: dict[str, dict[str, Any]], interval_s: float = 0.25) -> GatewayConfig:
    """Devices with three PLC input tags each, one fast group."""
    def tags(prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_outdoor": {"function": "input", "address": 0, "type": "int16", "scale": 0.1, "group": "fast"},
            f"{prefix}_supply": {"function": "input", "address": 7, "type": "int16", "scale": 0.1, "group": "fast"},
            f"{prefix}_flow": {"function": "input", "address": 11, "scale": 0.1, "group": "fast"},
        }
    return GatewayConfig.model_validate({
        "station": {"id": "t1", "name": "test"},
        "groups": {"fast": {"interval_s": interval_s}},
        "devices": {
            name: {"protocol": "modbus_tcp", "host": "127.0.0.1", "retries": 0,
                   "backoff": {"initial_s": 0.2, "max_s": 1.0}, "tags": tags(name), **extra}
            for name, extra in devices.items()
        },
    })


async def test_dead_and_slow_devices_never_delay_a_healthy_one(station_server: StationModbusServer) -> None:
    async with StationModbusServer(demo_station(), port=0) as slow_server, \
               StationModbusServer(demo_station(), port=0) as silent_server:
        slow_server.set_comm_faults(1, CommFaults(delay_s=0.6))
        silent_server.set_comm_faults(1, CommFaults(offline=True))
        config = small_config({
            "healthy": {"port": station_server.port, "timeout_s": 1.0},
            "slow": {"port": slow_server.port, "timeout_s": 2.0},
            "silent": {"port": silent_server.port, "timeout_s": 0.5},
            "refusing": {"port": free_port(), "timeout_s": 0.5},
        })
        gateway = Gateway(config)
        async with Recorder(gateway.bus) as recorder, gateway:
            await asyncio.sleep(3.0)

    healthy = gateway.devices["healthy"].stats
    assert healthy.polls >= 11, f"healthy device polled {healthy.polls} times in 3 s at 0.25 s"
    assert max(healthy.lateness_s) < 0.15, "a healthy device's polls started late"
    good = [b for _, b in recorder.batches("healthy") if all(s.quality is Quality.GOOD for s in b.samples)]
    assert len(good) == healthy.polls

    # The slow device still delivers, at the pace its answers allow (0.6 s per request).
    assert 2 <= len(recorder.batches("slow")) <= 6
    assert all(s.quality is Quality.GOOD for _, b in recorder.batches("slow") for s in b.samples)
    # Dead devices are reported lost, once, with every value bad and a reason.
    for name, reason in (("silent", "timeout"), ("refusing", "connection_lost")):
        statuses = recorder.statuses(name)
        assert [s.online for s in statuses] == [False], statuses
        latest = recorder.latest(f"{name}_outdoor")
        assert latest is not None and latest.quality is Quality.BAD and latest.reason.startswith(reason)


async def test_device_restarted_mid_run_comes_back_without_restarting_the_gateway(
    station_server: StationModbusServer,
) -> None:
    interval, timeout = 0.25, 0.5
    config = small_config({"plc": {"port": station_server.port, "timeout_s": timeout}}, interval)
    gateway = Gateway(config)
    async with Recorder(gateway.bus) as recorder, gateway:
        await recorder.wait_for(lambda: gateway.devices["plc"].online is True, 5, "first connection")
        await station_server.stop()
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await recorder.wait_for(lambda: recorder.statuses("plc")[-1:] and not recorder.statuses("plc")[-1].online,
                                5, "device lost")
        latest = recorder.latest("plc_outdoor")
        assert latest is not None and latest.quality is Quality.BAD
        lost_after = loop.time() - stopped_at
        assert lost_after <= interval + timeout + 0.3, f"values went bad only after {lost_after:.2f} s"

        await station_server.start()
        await recorder.wait_for(lambda: recorder.statuses("plc")[-1].online, 5, "device back online")
        await recorder.wait_for(lambda: (s := recorder.latest("plc_outdoor")) is not None and s.quality is Quality.GOOD,
                                5, "good values again")
    assert [s.online for s in recorder.statuses("plc")] == [True, False, True]


async def test_exception_addresses_are_isolated_and_the_split_remembered(station_server: StationModbusServer) -> None:
    # primary_flow (input register 5) now answers "illegal data address", like a PLC whose
    # firmware lost a variable. Its block must be split until only that register is refused.
    station_server.set_comm_faults(1, CommFaults(exception_ranges=(ExceptionRange(4, 5, 1),)))
    config = station_config(station_server.port)
    gateway = Gateway(config)
    plc = gateway.devices["plc"]
    fast = next(g for g in plc._groups if g.name == "fast")  # noqa: SLF001
    await plc.link.connect()
    try:
        first = {s.tag: s for s in (await plc.poll_group(fast)).samples}
        split_plan = plc.planned_requests()["fast"]
        station_server.reset_request_counts()
        second = {s.tag: s for s in (await plc.poll_group(fast)).samples}
    finally:
        plc.link.close()

    for samples in (first, second):
        assert samples["primary_flow"].quality is Quality.BAD
        assert "exception 2" in samples["primary_flow"].reason
        good = [s for tag, s in samples.items() if tag != "primary_flow"]
        assert good and all(s.quality is Quality.GOOD for s in good)
    assert split_plan > 2, "the refused block was not split"
    assert sum(station_server.request_counts().values()) == split_plan, "the split was not remembered"


async def test_devices_of_one_kind_share_their_points_and_name_their_values_with_their_own_tags(
        station_server: StationModbusServer) -> None:
    # Two PLCs of one kind (same registers, tags named <device>_<tag>); the PLC "a" refuses the
    # register of its flow, so its block is split, and the split must stay its own.
    config = small_config({name: {"port": station_server.port, "unit_id": unit} for name, unit in (("a", 1), ("b", 1))})
    gateway = Gateway(config)
    a, b = gateway.devices["a"], gateway.devices["b"]
    def planned(poller: DevicePoller) -> list[int]:
        return [id(point) for group in poller._groups for block in group.blocks for point in block.points]  # noqa: SLF001
    assert len(planned(a)) == 3 and planned(a) == planned(b), "each device made points of its own"
    before = b.planned_requests()
    station_server.set_comm_faults(1, CommFaults(exception_ranges=(ExceptionRange(4, 11, 1),)))
    try:
        refused = await poll_every_group_once(a)
        station_server.set_comm_faults(1, CommFaults())
        answered = await poll_every_group_once(b)
    finally:
        a.link.close()
        b.link.close()

    assert set(refused) == {"a_outdoor", "a_supply", "a_flow"} and set(answered) == {"b_outdoor", "b_supply", "b_flow"}
    assert refused["a_flow"].quality is Quality.BAD and "exception 2" in refused["a_flow"].reason
    assert refused["a_supply"].quality is Quality.GOOD and refused["a_outdoor"].quality is Quality.GOOD
    assert all(sample.quality is Quality.GOOD for sample in answered.values())
    assert answered["b_outdoor"].value == pytest.approx(station_server.measurements.outdoor_c, abs=0.051)
    assert a.planned_requests()["fast"] > before["fast"], "the refused block was not split"
    assert b.planned_requests() == before, "a split of one device changed another's plan"


async def test_refused_writes_never_reach_the_wire_and_a_good_one_is_read_back(station_server: StationModbusServer) -> None:
    config = station_config(station_server.port)
    station = station_server.station
    before = station.plc.supply_setpoint_c
    gateway = Gateway(config)
    async with gateway:
        await Recorder(gateway.bus).wait_for(lambda: gateway.devices["plc"].online is True, 5, "PLC online")
        station_server.reset_request_counts()
        refusals = {
            ("no_such_tag", 50.0): "unknown tag",
            ("outdoor_temp", 5.0): "not writable",
            ("supply_setpoint", 95.0): "outside the limits",
            ("supply_setpoint", 20.0): "outside the limits",
            ("supply_setpoint", math.nan): "not a finite number",
            ("supply_setpoint", "hot"): "not a finite number",
            ("supply_setpoint", round(before + 9.0, 1)): "exceeds max_step",
        }
        for (tag, value), reason in refusals.items():
            result = await gateway.writes.write(tag, value, origin="test")
            assert not result.accepted and reason in result.reason, (tag, value, result)
        assert not any(fc in WRITE_FCS for (_, fc) in station_server.request_counts()), "a refused write reached the PLC"
        assert station.plc.supply_setpoint_c == before

        target = round(before + 3.0, 1)
        done = await gateway.writes.write("supply_setpoint", target, origin="test")
        assert done.accepted, done
        assert done.readback == pytest.approx(target)
        assert station.plc.supply_setpoint_c == pytest.approx(target)
        too_soon = await gateway.writes.write("supply_setpoint", before, origin="test")
        assert not too_soon.accepted and "too soon" in too_soon.reason
    writes = {fc: n for (unit, fc), n in station_server.request_counts().items() if fc in WRITE_FCS}
    assert writes == {6: 1}
