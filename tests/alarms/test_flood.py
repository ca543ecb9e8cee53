"""A flood (200 alarms at once) is summarised for the operator and recorded in full: every
transition leaves through the outbox and reaches MQTT, each with its own seq."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from tooling.devstack import Mosquitto
from sim.modbus_server import StationModbusServer
from tests.mqtt.conftest import TOPIC, Subscriber, gateway_config, station_with_mqtt, until

FLOODING = 200


async def test_200_alarms_at_once_are_summarised_and_every_transition_is_published_once(
        tmp_path: Path, broker: Mosquitto, station_server: StationModbusServer) -> None:
    data = station_with_mqtt(station_server.port, broker.port)
    # The secondary supply reads about 65 C: each of these low-limit alarms is active at once.
    data["alarms"]["definitions"].update({
        f"flood_{i:03d}": {"kind": "threshold", "tag": "secondary_supply_temp", "level": "l", "limit": 100 + i,
                           "priority": "low", "message": f"flood test alarm {i}"} for i in range(FLOODING)})
    with Subscriber(broker.port) as dispatch:
        async with Gateway(gateway_config(data), state_dir=tmp_path / "state") as gateway:
            flood_ids = {f"flood_{i:03d}" for i in range(FLOODING)}
            await until(lambda: flood_ids <= {m.json()["id"] for m in dispatch.on(f"{TOPIC}/events")}, 20,
                        "every flood alarm on MQTT")
            await until(lambda: any(m.json()["id"] == "alarm_flood" for m in dispatch.on(f"{TOPIC}/events")), 5,
                        "the flood summary")
            summarised = gateway.alarms.engine.summarised
    events = [m.json() for m in dispatch.on(f"{TOPIC}/events")]
    by_seq = {event["seq"]: event for event in events}
    flood = [e for e in by_seq.values() if e["id"] in flood_ids]
    assert sorted(e["id"] for e in flood) == sorted(flood_ids)  # each activation once, none dropped
    assert all(e["state"] == "active" for e in flood)
    annunciated = [e for e in flood if e["annunciated"]]
    assert len(annunciated) <= 10 and summarised >= FLOODING - 10
    [summary] = [e for e in by_seq.values() if e["id"] == "alarm_flood"]
    assert summary["state"] == "active" and summary["priority"] == "high" and "summarised" in summary["message"]
