"""OPC UA acquisition against the simulator's OPC UA server over real loopback sockets."""

from __future__ import annotations

import asyncio
import time

import pytest
from asyncua import Client, ua

from drivers.base import Quality
from drivers.opcua.reading import read_devices
from gateway.samples import Sample, SampleBatch
from gateway.writes import WriteQueue
from sim.opcua_server import OpcUaFaults
from sim.opcua_space import HEARTBEAT_ID, Kind, address_space
from sim.registers import DEFAULT_MAP
from sim.runner import SimRunner
from tests.drivers.opcua.conftest import device_config, endpoint, running
from tests.gateway.conftest import Recorder, free_port

PUBLISHING_S = 0.5


def samples_since(recorder: Recorder, index: int) -> list[Sample]:
    """Every sample of the items recorded from ``index`` on (``len(recorder.items)`` taken earlier)."""
    return [s for _, item in recorder.items[index:] if isinstance(item, SampleBatch) for s in item.samples]


def whole_address_space() -> dict[str, dict[str, object]]:
    """One tag per variable the PLC serves, by string NodeId, plus the numeric and browse-path kinds."""
    tags: dict[str, dict[str, object]] = {
        point.node_id.lower().replace(".", "_"): {"node": f"ns=plc;s={point.node_id}", "group": "fast"}
        for point in address_space(DEFAULT_MAP)
    }
    tags["heartbeat"] = {"node": f"ns=plc;i={HEARTBEAT_ID}", "group": "fast"}
    tags["supply_by_path"] = {"browse_path": "plc:Station/plc:SecondarySide/plc:SupplyTemperature", "group": "fast"}
    return tags


async def test_the_whole_plc_address_space_is_subscribed_and_changes_arrive_within_one_publishing_interval(
        plc: SimRunner) -> None:
    tags = whole_address_space()
    config = device_config(endpoint(plc), tags)
    offset = time.time() - asyncio.get_running_loop().time()  # recorder times are loop times
    async with running(config, {"fast": PUBLISHING_S}) as (device, recorder):
        await recorder.wait_for(lambda: all(recorder.latest(tag) is not None for tag in tags), 15, "every tag")
        started = len(recorder.items)
        await asyncio.sleep(3.0)
        assert device.online is True
        beats: dict[object, float] = {}
        for arrived, batch in recorder.items[started:]:
            for sample in batch.samples if isinstance(batch, SampleBatch) else ():
                if sample.tag == "heartbeat" and sample.value not in beats:
                    beats[sample.value] = arrived + offset - sample.timestamp
    assert len(beats) >= 3 / PUBLISHING_S - 1, f"the heartbeat changed only {len(beats)} times in 3 s"
    assert max(beats.values()) <= PUBLISHING_S + 0.15, beats  # source timestamp to the bus
    latest = {tag: recorder.latest(tag) for tag in tags}
    good = {tag for tag, sample in latest.items() if sample is not None and sample.quality is Quality.GOOD}
    empty_rooms = {tag for tag in tags if tag.startswith("rooms_room") and int(tag[10:12]) >= 6}
    assert good == set(tags) - empty_rooms  # the demo station has six room sensors
    assert {latest[tag].reason for tag in empty_rooms} == {"BadWaitingForInitialData"}  # type: ignore[union-attr]
    by_path, by_id = latest["supply_by_path"], latest["secondaryside_supplytemperature"]
    assert by_path is not None and by_id is not None and by_path.value == by_id.value
    kinds = {point.kind for point in address_space(DEFAULT_MAP)}
    assert {Kind.FLOAT, Kind.DOUBLE, Kind.BOOLEAN, Kind.UINT16, Kind.UINT32} <= kinds  # every type was read


async def test_absolute_and_percent_deadband_filters_hold_back_smaller_changes(plc: SimRunner) -> None:
    tags = {
        "setpoint": {"node": "ns=plc;s=SecondarySide.SupplySetpoint", "group": "fast"},  # the group's filter
        "manual_valve": {"node": "ns=plc;s=PrimarySide.ManualValvePosition", "group": "fast",
                         "filter_deadband_percent": 2.0},  # its own: of its EURange 0..100 %, 2 points
    }
    config = device_config(endpoint(plc), tags, subscriptions={"fast": {"filter_deadband": 0.5}})
    async with running(config, {"fast": 0.2}) as (_device, recorder), \
            Client(endpoint(plc)) as client:
        index = await client.get_namespace_index("urn:heatgw:sim:station-plc")
        setpoint = client.get_node(ua.NodeId("SecondarySide.SupplySetpoint", index))
        valve = client.get_node(ua.NodeId("PrimarySide.ManualValvePosition", index))
        for setpoint_c, valve_pct in ((50.0, 10.0), (50.25, 11.5), (51.0, 13.0)):
            await setpoint.write_value(ua.DataValue(ua.Variant(setpoint_c, ua.VariantType.Float)))
            await valve.write_value(ua.DataValue(ua.Variant(valve_pct, ua.VariantType.Float)))
            await recorder.wait_for(lambda: recorder.latest("setpoint") is not None, 10, "the setpoint")
            await asyncio.sleep(0.8)
        seen = {(s.tag, s.value) for _, batch in recorder.batches("plc") for s in batch.samples}
    assert {("setpoint", 50.0), ("setpoint", 51.0), ("manual_valve", 10.0), ("manual_valve", 13.0)} <= seen
    assert ("setpoint", 50.25) not in seen  # 0.25 K: within the absolute deadband
    assert ("manual_valve", 11.5) not in seen  # 1.5 points of 100: within 2 %


async def test_a_server_that_refuses_subscriptions_is_read_in_batches_at_the_group_interval(plc: SimRunner) -> None:
    assert plc.opcua is not None
    await plc.opcua.set_faults(OpcUaFaults(subscriptions=False))
    tags = {"outdoor": {"node": "ns=plc;s=Outdoor.Temperature", "group": "fast"},
            "heartbeat": {"node": f"ns=plc;i={HEARTBEAT_ID}", "group": "fast"},
            "tank": {"node": "ns=plc;s=Tank.Level", "group": "slow"}}
    config = device_config(endpoint(plc), tags, subscriptions={"slow": {"mode": "poll"}})
    async with running(config, {"fast": 0.25, "slow": 1.0}) as (device, recorder):
        await recorder.wait_for(lambda: len(recorder.batches("plc", "fast")) >= 9, 15, "nine reads of fast")
        fast = recorder.batches("plc", "fast")
        slow = recorder.batches("plc", "slow")
    assert device.online is True
    assert all({s.tag for s in batch.samples} == {"outdoor", "heartbeat"} for _, batch in fast)  # one Read each
    gaps = [b - a for (a, _), (b, _) in zip(fast, fast[1:], strict=False)]
    assert 0.2 <= sum(gaps) / len(gaps) <= 0.3, gaps
    assert len(slow) in (2, 3)  # the slow group at its own interval
    beats = [s.value for _, batch in fast for s in batch.samples if s.tag == "heartbeat"]
    assert beats == sorted(beats) and len(set(beats)) > 5  # fresh values, not one value repeated


async def test_a_restarted_server_is_reconnected_its_nodes_found_again_and_the_gap_is_bad(plc: SimRunner) -> None:
    assert plc.opcua is not None
    tags = {"outdoor": {"node": "ns=plc;s=Outdoor.Temperature", "group": "fast"},
            "heartbeat": {"node": f"ns=plc;i={HEARTBEAT_ID}", "group": "fast"}}
    async with running(device_config(endpoint(plc), tags), {"fast": 0.25}) as (device, recorder):
        await recorder.wait_for(lambda: device.online is True, 15, "the first session")
        index_before = plc.opcua.namespace_index
        await plc.opcua.stop()
        await recorder.wait_for(lambda: device.online is False, 5, "the loss to be noticed")
        gap = recorder.latest("outdoor")
        assert gap is not None and gap.quality is Quality.BAD and gap.reason.startswith("connection_lost: ")
        assert recorder.statuses("plc")[-1].online is False
        await plc.opcua.start()
        assert plc.opcua.namespace_index != index_before  # a client holding the index would read other nodes
        restarted = len(recorder.items)
        await recorder.wait_for(lambda: device.online is True, 15, "the new session")
        await asyncio.sleep(1.5)
        after = samples_since(recorder, restarted)
    beats = {s.value for s in after if s.tag == "heartbeat" and s.quality is Quality.GOOD}
    assert len(beats) >= 3  # a recreated subscription pushing changes again
    outdoor = [s for s in after if s.tag == "outdoor"][-1]
    assert outdoor.quality is Quality.GOOD
    assert abs(outdoor.value - plc.opcua.measurements.outdoor_c) < 0.2  # type: ignore[operator]


async def test_a_removed_node_and_a_failed_sensor_make_only_their_own_tags_bad(plc: SimRunner) -> None:
    assert plc.opcua is not None
    tags = {"tank": {"node": "ns=plc;s=Tank.Level", "group": "fast"},
            "flow": {"node": "ns=plc;s=PrimarySide.Flow", "group": "fast"},
            "heartbeat": {"node": f"ns=plc;i={HEARTBEAT_ID}", "group": "fast"}}
    async with running(device_config(endpoint(plc), tags), {"fast": 0.25}) as (device, recorder):
        await recorder.wait_for(lambda: all(recorder.latest(t) is not None for t in tags), 15, "every tag")
        await plc.opcua.set_faults(OpcUaFaults(removed=frozenset({"Tank.Level"}),
                                               bad={"PrimarySide.Flow": "BadSensorFailure"}))
        await recorder.wait_for(lambda: recorder.latest("tank").quality is Quality.BAD  # type: ignore[union-attr]
                                and recorder.latest("flow").quality is Quality.BAD, 10, "both tags bad")  # type: ignore[union-attr]
        marked = len(recorder.items)
        await asyncio.sleep(1.0)
        later = samples_since(recorder, marked)
    assert recorder.latest("tank").reason == "BadNodeIdUnknown"  # type: ignore[union-attr]
    assert recorder.latest("flow").reason == "BadSensorFailure"  # type: ignore[union-attr]
    assert device.online is True
    assert any(s.tag == "heartbeat" and s.quality is Quality.GOOD for s in later)  # the rest goes on
    assert not any(s.tag in ("tank", "flow") and s.quality is Quality.GOOD for s in later)


async def test_a_write_within_limits_is_read_back_and_one_outside_never_reaches_the_server(plc: SimRunner) -> None:
    assert plc.opcua is not None
    tags = {"setpoint": {"node": "ns=plc;s=SecondarySide.SupplySetpoint", "group": "fast", "resolution": 0.1,
                         "writable": {"min": 30, "max": 90}}}
    async with running(device_config(endpoint(plc), tags), {"fast": 0.25}) as (device, recorder):
        await recorder.wait_for(lambda: device.online is True, 15, "the session")
        queue = WriteQueue({"plc": device})
        worker = asyncio.create_task(queue.run())
        try:
            done = await queue.write("setpoint", 57.3, "test")
            before = plc.opcua.writes_received
            refused = await queue.write("setpoint", 91.0, "test")
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    assert done.accepted and done.readback == pytest.approx(57.3, abs=1e-4), done  # written as the node's Float
    assert plc.station.plc.supply_setpoint_c == pytest.approx(57.3, abs=1e-4)
    assert not refused.accepted and "outside the limits" in refused.reason
    assert plc.opcua.writes_received == before  # refused in the gateway: nothing went on the wire
    assert plc.station.plc.supply_setpoint_c == pytest.approx(57.3, abs=1e-4)


async def test_a_server_that_stops_answering_is_noticed_by_the_keep_alive_while_only_subscribed(
        plc: SimRunner) -> None:
    assert plc.opcua is not None
    tags = {"heartbeat": {"node": f"ns=plc;i={HEARTBEAT_ID}", "group": "fast"}}
    async with running(device_config(endpoint(plc), tags), {"fast": 0.25}) as (device, recorder):
        await recorder.wait_for(lambda: device.online is True, 15, "the session")
        loop = asyncio.get_running_loop()
        stalled = loop.time()
        await plc.opcua.set_faults(OpcUaFaults(delay_s=5.0))  # Read answered 5 s late: the PLC hangs
        await recorder.wait_for(lambda: device.online is False, 5, "the keep-alive to notice")
        noticed = loop.time() - stalled
        await plc.opcua.set_faults(OpcUaFaults())
    assert noticed < 5.0  # keepalive_s 0.5 (session timeout 60 s): the gateway itself reads nothing here
    assert recorder.statuses("plc")[-1].reason.startswith("connection_lost: session lost")
    assert recorder.latest("heartbeat").quality is Quality.BAD  # type: ignore[union-attr]


async def test_heatgw_read_shows_each_node_as_the_server_numbers_it_today_and_a_silent_server_as_such(
        plc: SimRunner) -> None:
    assert plc.opcua is not None
    tags = {"setpoint": {"node": "ns=plc;s=SecondarySide.SupplySetpoint", "unit": "degC"},
            "gone": {"node": "ns=plc;s=No.Such.Node"}}
    reachable = device_config(endpoint(plc), tags)
    silent = device_config(f"opc.tcp://127.0.0.1:{free_port()}/nobody", tags, timeout_s=1.0)
    answered, nobody = await read_devices({"plc": reachable, "other": silent}, {})
    by_tag = {reading.tag: reading for reading in answered.tags}
    index = plc.opcua.namespace_index
    assert answered.answered and by_tag["setpoint"].where == f"ns={index};s=SecondarySide.SupplySetpoint"
    assert by_tag["setpoint"].raw == "Float Good" and by_tag["setpoint"].quality is Quality.GOOD
    assert (by_tag["gone"].quality, by_tag["gone"].reason) == (Quality.BAD, "BadNodeIdUnknown")
    assert not nobody.answered and nobody.reason.startswith("connect to ")
