"""The simulator's OPC UA server, through a plain asyncua client over loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadOutOfRange, BadUserAccessDenied

from sim.opcua_server import OpcUaFaults, StationOpcUaServer
from sim.opcua_space import HEARTBEAT_ID, NAMESPACE_URI, address_space
from sim.registers import Layout, RegisterMap
from sim.runner import SimRunner
from tests.gateway.conftest import demo_station


@pytest.fixture
async def served() -> AsyncIterator[StationOpcUaServer]:
    async with StationOpcUaServer(demo_station()) as server:
        yield server


def node(client: Client, index: int, identifier: str | int) -> ua.NodeId:
    return client.get_node(ua.NodeId(identifier, index))


async def test_the_address_space_is_laid_out_like_a_station_plc_with_engineering_units(
        served: StationOpcUaServer) -> None:
    async with Client(served.endpoint) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        station = await client.nodes.objects.get_child(f"{index}:Station")
        children = {(await child.read_browse_name()).Name for child in await station.get_children()}
        assert {"PrimarySide", "SecondarySide", "Pumps", "Rooms", "HeatMeter", "Safety", "Tank"} <= children
        supply = await client.nodes.objects.get_child(
            [f"{index}:Station", f"{index}:SecondarySide", f"{index}:SupplyTemperature"])
        assert supply.nodeid == ua.NodeId("SecondarySide.SupplyTemperature", index)
        units = await supply.get_child("0:EngineeringUnits")
        info = await units.read_value()
        assert info.DisplayName.Text == "°C" and info.UnitId == 4408652  # UNECE "CEL"
        outdoor = await node(client, index, "Outdoor.Temperature").read_value()
        assert outdoor == pytest.approx(served.measurements.outdoor_c, abs=1e-4)  # a Float, as an S7 Real
        assert await node(client, index, HEARTBEAT_ID).read_data_type_as_variant_type() is ua.VariantType.UInt32


async def test_a_setpoint_outside_the_plc_limits_is_refused_and_one_inside_reaches_the_plc(
        served: StationOpcUaServer) -> None:
    plc = served.station.plc
    async with Client(served.endpoint) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        setpoint = node(client, index, "SecondarySide.SupplySetpoint")
        await setpoint.write_value(ua.DataValue(ua.Variant(61.5, ua.VariantType.Float)))
        assert plc.supply_setpoint_c == 61.5
        with pytest.raises(BadOutOfRange):
            await setpoint.write_value(ua.DataValue(ua.Variant(96.0, ua.VariantType.Float)))  # the PLC's max is 95
        assert plc.supply_setpoint_c == 61.5
        assert await setpoint.read_value() == 61.5
        with pytest.raises(BadUserAccessDenied):
            await node(client, index, "SecondarySide.SupplyTemperature").write_value(
                ua.DataValue(ua.Variant(10.0, ua.VariantType.Float)))


async def test_a_restarted_server_moves_the_station_namespace_and_faults_show_as_status_codes(
        served: StationOpcUaServer) -> None:
    before = served.namespace_index
    await served.stop()
    await served.start()
    assert served.namespace_index != before
    await served.set_faults(OpcUaFaults(bad={"PrimarySide.Flow": "BadSensorFailure"},
                                        removed=frozenset({"Tank.Level"})))
    async with Client(served.endpoint) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        assert index == served.namespace_index
        flow = await node(client, index, "PrimarySide.Flow").read_data_value(raise_on_bad_status=False)
        assert flow.StatusCode.value == ua.StatusCodes.BadSensorFailure
        gone = await node(client, index, "Tank.Level").read_data_value(raise_on_bad_status=False)
        assert gone.StatusCode.value == ua.StatusCodes.BadNodeIdUnknown
        await served.set_faults(OpcUaFaults())
        level = await node(client, index, "Tank.Level").read_data_value()
        assert level.StatusCode.is_good()


async def test_the_runner_serves_opcua_beside_modbus_and_takes_its_faults_on_the_control_port() -> None:
    async with SimRunner(demo_station(), opcua_port=0, control_port=None, tick_s=0.05) as runner:
        assert runner.opcua is not None and runner.ports["opcua_port"] == runner.opcua.port
        reply = await runner.handle({"cmd": "opcua", "bad": {"PrimarySide.Flow": "BadSensorFailure"}})
        assert reply == {"ok": True, "result": {"offline": False, "delay_s": 0.0, "subscriptions": True,
                                                "bad": {"PrimarySide.Flow": "BadSensorFailure"}, "removed": []}}
        refused = await runner.handle({"cmd": "opcua", "removed": ["No.Such.Node"]})
        assert refused["ok"] is False and "No.Such.Node" in refused["error"]


def test_every_circuit_has_its_own_objects_and_no_modbus_only_row_is_served() -> None:
    points = address_space(RegisterMap(Layout(circuits=2, rooms=6)))
    ids = {point.node_id for point in points}
    assert {"SecondarySide.SupplySetpoint", "Circuit1.SecondarySide.SupplySetpoint", "Rooms.Room05.Temperature",
            "HeatMeter.Energy"} <= ids
    assert not any("status_word" in point.row.name or "bcd" in point.row.name for point in points)
    assert len(ids) == len(points)
