"""End-to-end delivery at the station: a PUBACK frees the window, only the historian's confirmation
frees the outbox, and a historian can have any unconfirmed range sent again (real broker, the
simulated station, the gateway in-process; the test plays the historian)."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.app import Gateway
from gateway.mqtt.payloads import Delivered, delivered, replay_command
from sim.modbus_server import StationModbusServer
from tests.mqtt.conftest import TOPIC, Subscriber, gateway_config, station_with_mqtt, until
from tests.mqtt.test_store_and_forward import stored
from tooling.devstack import Mosquitto


def replay(historian: Subscriber, command_id: str, first: int, last: int) -> None:
    historian.publish(f"{TOPIC}/cmd/replay", replay_command(command_id, "historian/test", time.time() + 60, first, last))


def answer(historian: Subscriber, command_id: str) -> dict[str, object] | None:
    for message in historian.on(f"{TOPIC}/cmd/replay/result"):
        if message.json()["id"] == command_id:
            return message.json()  # type: ignore[no-any-return]
    return None


async def test_a_message_stays_in_the_outbox_after_its_puback_until_the_historian_confirms_it(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto) -> None:
    config = gateway_config(station_with_mqtt(station_server.port, broker.port))
    state = tmp_path / "state"
    with Subscriber(broker.port, topics=(f"{TOPIC}/telemetry", f"{TOPIC}/cmd/replay/result")) as historian:
        async with Gateway(config, state_dir=state) as gateway:
            assert gateway.mqtt is not None
            publisher = gateway.mqtt.publisher
            await until(lambda: len(historian.seqs()) >= 10 and publisher.published_messages >= 10, 15,
                        "ten messages PUBACKed")
            _, waiting = stored(state)
            assert set(historian.seqs()) <= set(waiting), "PUBACKed, but nobody confirmed them: still stored"

            upto = max(historian.seqs()) - 3
            historian.publish(f"{TOPIC}/delivered", delivered(Delivered(upto, ((upto + 2, upto + 2),)), time.time()))
            await until(lambda: min(stored(state)[1]) > upto, 5, "the confirmed messages deleted")
            _, waiting = stored(state)
            assert upto + 1 in waiting and upto + 2 not in waiting and upto + 3 in waiting
            assert publisher.confirmed_messages == upto + 1

            last = gateway.mqtt.outbox.last_seq
            historian.publish(f"{TOPIC}/delivered", delivered(Delivered(last + 1000), time.time()))
            await until(lambda: gateway.mqtt is not None and gateway.mqtt.outbox.last_seq >= last + 3, 5,
                        "more telemetry")
            assert upto + 1 in stored(state)[1], "a confirmation of numbers never given is ignored whole"

            before = len(historian.seqs())
            replay(historian, "r1", upto - 4, upto + 3)
            await until(lambda: answer(historian, "r1") is not None, 10, "the replay answer")
            reply = answer(historian, "r1")
            assert reply is not None and reply["ok"] is True
            assert reply["result"] == {"from_seq": upto - 4, "to_seq": upto + 3, "resent": 2, "absent": 6}
            assert sorted(historian.seqs()[before:]).count(upto + 1) == 1, "the unconfirmed ones came again"

            replay(historian, "r2", last + 5000, last + 5001)
            await until(lambda: answer(historian, "r2") is not None, 10, "the refusal")
            reply = answer(historian, "r2")
            assert reply is not None and reply["ok"] is False
            assert str(reply["reason"]).startswith(f"to_seq {last + 5001} was never given")


async def test_a_station_that_reconnects_offers_again_everything_never_confirmed(
        tmp_path: Path, station_server: StationModbusServer) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    config = gateway_config(station_with_mqtt(station_server.port, broker.port))
    try:
        async with Gateway(config, state_dir=tmp_path / "state") as gateway:
            assert gateway.mqtt is not None
            with Subscriber(broker.port, topics=(f"{TOPIC}/telemetry", f"{TOPIC}/events")) as first:
                await until(lambda: len(first.seqs()) >= 10, 15, "telemetry before the outage")
            delivered_before = set(first.seqs())
            broker.stop()
            broker.start()
            with Subscriber(broker.port, topics=(f"{TOPIC}/telemetry", f"{TOPIC}/events")) as second:
                await until(lambda: delivered_before <= set(second.seqs()), 15,
                            "every unconfirmed message offered again after the reconnection")
                assert min(second.seqs()) == 1, "from the oldest, in order"
    finally:
        broker.stop()

