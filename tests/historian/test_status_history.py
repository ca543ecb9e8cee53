"""The historian keeps a station's online/offline history, its devices' status and the controller's
enumerated text fields, with real processes: the simulator, ``heatgw run`` with its controller, a
Mosquitto, a bridge process, VictoriaMetrics.

A station's status is retained and its last will has no time of its own: every copy a broker hands
out again (a bridge reconnecting, a message redelivered before it was acknowledged) must not
become a new transition. The test kills the gateway (the broker publishes the will), restarts it
(a birth), restarts and kills the bridge, and stops the gateway cleanly; the database must hold
exactly those four transitions, each once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tooling.devstack import Mosquitto, VictoriaMetrics, free_port
from gateway.mqtt.payloads import DEVICE_REASON, OTHER, OUTDOOR_SOURCE, PHASE, SEASON, STATION_REASON, WRITE_STATUS
from tests.historian.conftest import BridgeProcess, historian_metric, wait_until
from tests.historian.test_delivery import GatewayProcess, fast_controller
from tests.historian.test_end_to_end import simulator  # noqa: F401 - a fixture used here
from tests.mqtt.conftest import STATION, station_with_mqtt
from tests.mqtt.test_store_and_forward import write_config

KEEPALIVE_S = 5
WILL_WITHIN_S = 1.5 * KEEPALIVE_S + 3
"""The broker publishes the will once it has missed 1.5 keepalives; the bridge writes it within
its batch age; a few seconds of slack for a loaded machine."""


def series(tsdb: VictoriaMetrics, selector: str) -> dict[int, float]:
    """timestamp ms -> value of the one series ``selector`` matches (empty if none)."""
    found = tsdb.export(selector)
    assert len(found) <= 1, found
    return dict(zip(found[0]["timestamps"], found[0]["values"], strict=True)) if found else {}  # type: ignore[arg-type]


def transitions(tsdb: VictoriaMetrics) -> list[tuple[int, int, int]]:
    """(time ms, state code, reason code) of every stored station status, in time order."""
    states = series(tsdb, f'{{__name__="status_state_code",station="{STATION}"}}')
    reasons = series(tsdb, f'{{__name__="status_reason_code",station="{STATION}"}}')
    return [(ts, int(states[ts]), int(reasons[ts])) for ts in sorted(states)]


async def restart(bridge: BridgeProcess) -> None:
    """Stop the bridge and start it, then kill it and start it, giving each life time to write."""
    await asyncio.to_thread(bridge.stop)
    await asyncio.to_thread(bridge.start)
    await asyncio.sleep(2)
    bridge.kill()
    await asyncio.to_thread(bridge.start)
    await asyncio.sleep(3)


def labels(tsdb: VictoriaMetrics, measurement: str, field: str, **match: str) -> set[str]:
    """The ``name`` labels stored for a coded text field."""
    selector = ",".join([f'__name__="{measurement}_text_code"', f'station="{STATION}"', f'field="{field}"',
                         *(f'{k}="{v}"' for k, v in match.items())])
    return {str(found["metric"]["name"]) for found in tsdb.export("{" + selector + "}")}  # type: ignore[index]


async def test_kills_restarts_and_a_clean_stop_are_stored_once_each_with_device_status_and_controller_codes(
        tmp_path: Path, simulator: int, broker: Mosquitto, tsdb: VictoriaMetrics,  # noqa: F811
        bridges: Callable[..., BridgeProcess]) -> None:
    bridge = bridges("status")
    await asyncio.to_thread(bridge.start)
    data = station_with_mqtt(simulator, broker.port, batch_max_age_s=0.3, integrity_interval_s=1.0,
                             keepalive_s=KEEPALIVE_S)
    data["devices"]["heat_meter"]["port"] = free_port()  # nothing listens there: the meter is offline
    gateway = GatewayProcess(write_config(tmp_path, data), fast_controller(tmp_path), tmp_path / "state",
                             tmp_path / "gateway.log")
    online, offline = 1, 0

    def stored(count: int) -> Callable[[], bool]:
        return lambda: len(transitions(tsdb)) >= count

    try:
        gateway.start()
        await asyncio.to_thread(wait_until, stored(1), 30, "the birth in the database", 0.5)
        assert [state for _, state, _ in transitions(tsdb)] == [online]

        # Device status, through the outbox: the PLC answers, the meter's port is closed.
        await asyncio.to_thread(wait_until, lambda: bool(labels(tsdb, "device", "reason", device="heat_meter")), 30,
                                "the heat meter's offline status in the database", 0.5)
        assert set(series(tsdb, f'{{__name__="device_state_code",device="plc",station="{STATION}"}}').values()) == {1}
        assert set(series(tsdb, f'{{__name__="device_state_code",device="heat_meter",station="{STATION}"}}').values()) == {0}
        reasons = labels(tsdb, "device", "reason", device="heat_meter")
        assert reasons <= {"connection_lost", "timeout"}, reasons
        [reason_code] = set(series(tsdb, f'{{__name__="device_reason_code",device="heat_meter",station="{STATION}"}}')
                            .values())
        assert reason_code == DEVICE_REASON.codes[next(iter(reasons))]

        # The controller's text fields, as codes and closed-set labels.
        await asyncio.to_thread(wait_until, lambda: bool(labels(tsdb, "control", "season")), 30,
                                "the controller's season in the database", 0.5)
        [season] = labels(tsdb, "control", "season")
        assert season in SEASON.codes
        assert set(series(tsdb, f'{{__name__="control_season_code",station="{STATION}"}}').values()) == {
            SEASON.codes[season]}
        for field, table in [("outdoor_source", OUTDOOR_SOURCE), ("circuits_radiators_phase", PHASE),
                             ("circuits_radiators_write_status", WRITE_STATUS)]:
            names = labels(tsdb, "control", field)
            assert names and OTHER not in names and names <= set(table.codes), (field, names)
            assert series(tsdb, f'{{__name__="control_{field}_code",station="{STATION}"}}'), field

        killed = time.time()
        gateway.kill()
        await asyncio.to_thread(wait_until, stored(2), WILL_WITHIN_S + 10, "the last will in the database", 0.5)
        will_ms, state, reason = transitions(tsdb)[1]
        assert (state, reason) == (offline, STATION_REASON.codes["connection_lost"])
        assert killed <= will_ms / 1000 <= killed + WILL_WITHIN_S, "stored when the broker noticed the loss"

        # The bridge away and back, cleanly and killed: the retained will, which has no time of its
        # own, is handed out again and must not become a second "offline".
        await restart(bridge)
        assert len(transitions(tsdb)) == 2, "a repeated will is not a new transition"

        gateway.start()
        await asyncio.to_thread(wait_until, stored(3), 30, "the new birth in the database", 0.5)
        await restart(bridge)
        assert len(transitions(tsdb)) == 3, "a repeated birth is not a new transition"

        assert gateway.stop() == 0
        stopped = time.time()
        await asyncio.to_thread(wait_until, stored(4), 15, "the clean stop in the database", 0.5)
    finally:
        gateway.stop()

    history = transitions(tsdb)
    assert [(state, reason) for _, state, reason in history] == [
        (online, 0), (offline, STATION_REASON.codes["connection_lost"]), (online, 0),
        (offline, STATION_REASON.codes["shutdown"])]
    assert stopped - 5 <= history[-1][0] / 1000 <= stopped, "a clean stop carries the gateway's own time"
    info = tsdb.export(f'{{__name__="status_info_online",station="{STATION}"}}')
    assert len(info) == 1 and info[0]["metric"]["config_hash"].startswith("sha256:")  # type: ignore[index]
    assert len(info[0]["timestamps"]) == 2, "one info point per birth"  # type: ignore[arg-type]
    await asyncio.to_thread(wait_until, lambda: bool(historian_metric(tsdb, "status_repeats")), 10,
                            "the bridge's metrics", 0.5)
    assert historian_metric(tsdb, "status_repeats")["status"] >= 1, \
        "the broker handed the current status to the restarted bridge again, which recognised it"
