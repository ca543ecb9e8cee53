"""The bridge against a real Mosquitto and a real VictoriaMetrics: nothing lost, nothing doubled.

Stations are played by paho clients publishing exactly the README's MQTT contract; bridges are
real ``python -m gateway.historian run`` processes (killed with real signals), except where a test
needs to look inside one (flow control), which runs it in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from gateway.historian.bridge import Bridge
from gateway.historian.settings import load_historian_settings
from tests.historian.conftest import (
    BridgeProcess,
    Feeder,
    Station,
    bridge_config,
    check_exactly_once,
    historian_metric,
    sent_count,
    stored_count,
    wait_until,
)
from tooling.devstack import Mosquitto, VictoriaMetrics

Bridges = Callable[..., BridgeProcess]
Stations = Callable[..., list[Station]]


def wait_all_stored(tsdb: VictoriaMetrics, stations: list[Station], timeout: float) -> None:
    total = sent_count(stations)
    wait_until(lambda: stored_count(tsdb) >= total, timeout, f"all {total} samples in the database", interval=0.5)


def test_every_sample_lands_once_with_its_own_timestamp_quality_and_tags(
        bridges: Bridges, stations: Stations, tsdb: VictoriaMetrics) -> None:
    bridge = bridges("a")
    bridge.start()
    fleet = stations(3)
    with Feeder(fleet, interval_s=0.02):
        time.sleep(2)
    st = fleet[0]
    now = round(time.time() - 60, 3)
    assert st.client is not None
    st.client.publish("heatgw/st01/alarms/overtemp", json.dumps(
        {"state": "active", "ts": now, "severity": "high", "value": 96.5, "text": "supply too hot"}), qos=1, retain=True)
    st.client.publish("heatgw/st01/events/outage", json.dumps({"state": "started", "ts": now + 1}), qos=1)
    st.client.publish("heatgw/st01/control", json.dumps(
        {"ts": now + 2, "setpoint_c": 61.5, "enabled": True, "circuits": {"radiators": {"offset_k": -2.0}}}), qos=1)
    wait_all_stored(tsdb, fleet, timeout=30)
    assert check_exactly_once(tsdb, fleet) > 1000

    units = {s["metric"]["tag"]: (s["metric"]["unit"], s["metric"]["device"])  # type: ignore[index]
             for s in tsdb.export('{__name__="telemetry_quality",station="st01"}')}
    assert units["tag_00"] == ("degC", "plc") and units["tag_09"] == ("m³/h", "meter")
    wait_until(lambda: bool(tsdb.export('{__name__="control_circuits_radiators_offset_k"}')), 10, "controller state")
    [alarm] = tsdb.export('{__name__="alarm_state"}')
    assert alarm["metric"] == {"__name__": "alarm_state", "alarm": "overtemp", "severity": "high", "site": "test",
                               "station": "st01"}
    assert alarm["values"] == [1] and alarm["timestamps"] == [round(now * 1000)]
    [event] = tsdb.export('{__name__="event_state"}')
    assert event["timestamps"] == [round((now + 1) * 1000)]
    [control] = tsdb.export('{__name__="control_setpoint_c"}')
    assert control["values"] == [61.5] and control["timestamps"] == [round((now + 2) * 1000)]
    assert historian_metric(tsdb, "gaps", station="st01") == {"a": 0}
    assert bridge.stop() == 0


def test_database_down_for_30_s_loses_nothing_and_doubles_nothing(
        bridges: Bridges, stations: Stations, tsdb: VictoriaMetrics) -> None:
    bridge = bridges("a")
    bridge.start()
    fleet = stations(3)
    with Feeder(fleet, interval_s=0.05) as feeder:
        time.sleep(2)
        tsdb.stop()
        down_at = feeder.messages
        time.sleep(30)
        assert feeder.messages - down_at > 300, "stations kept publishing while the database was down"
        tsdb.start()
        time.sleep(2)
    wait_all_stored(tsdb, fleet, timeout=60)
    assert check_exactly_once(tsdb, fleet) == sent_count(fleet)
    log = bridge.log()
    assert "database write failed, retrying" in log and "database writes resumed" in log
    assert "telemetry sequence gap" not in log
    assert bridge.stop() == 0


def test_bridge_killed_with_sigkill_and_restarted_loses_nothing(
        bridges: Bridges, stations: Stations, tsdb: VictoriaMetrics) -> None:
    bridge = bridges("a")
    bridge.start()
    fleet = stations(3)
    with Feeder(fleet, interval_s=0.01):
        time.sleep(2)
        bridge.kill()
        time.sleep(2)
        bridge.start()
        time.sleep(2)
    wait_all_stored(tsdb, fleet, timeout=30)
    assert check_exactly_once(tsdb, fleet) == sent_count(fleet)
    assert "session_present=True" in bridge.log(), "the restarted bridge resumed its durable session"
    assert bridge.stop() == 0


def test_two_bridges_on_a_shared_subscription_split_the_load_and_write_everything_once(
        bridges: Bridges, stations: Stations, tsdb: VictoriaMetrics) -> None:
    first, second = bridges("a"), bridges("b")
    first.start()
    second.start()
    fleet = stations(4)
    with Feeder(fleet, interval_s=0.01):
        time.sleep(3)
    wait_all_stored(tsdb, fleet, timeout=30)
    assert check_exactly_once(tsdb, fleet) == sent_count(fleet)
    time.sleep(1.5)  # one more metrics interval after the last write
    written = historian_metric(tsdb, "written_values")
    total = sent_count(fleet)
    assert set(written) == {"a", "b"}
    assert all(count > total * 0.2 for count in written.values()), f"each bridge takes part of the load: {written}"
    # Each bridge saw only part of every station's numbers, yet neither reports a gap.
    for station in fleet:
        assert historian_metric(tsdb, "gaps", station=station.name) == {"a": 0, "b": 0}
    assert first.stop() == 0 and second.stop() == 0


def test_gaps_and_duplicates_are_counted_per_station_by_a_fleet(
        bridges: Bridges, stations: Stations, tsdb: VictoriaMetrics) -> None:
    sequence = {"gap_grace_s": 1.5}
    first, second = bridges("a", sequence=sequence), bridges("b", sequence=sequence)
    first.start()
    second.start()
    lossy, clean = stations(2)
    base = time.time() - 3600
    for _ in range(20):
        for station in (lossy, clean):
            station.telemetry(base + station.seq)
    lossy.telemetry(base + lossy.seq, skip=True)
    lossy.telemetry(base + lossy.seq, skip=True)
    for _ in range(10):
        lossy.telemetry(base + lossy.seq)
    wait_all_stored(tsdb, [lossy, clean], timeout=20)
    time.sleep(1)  # peers have exchanged what they wrote
    # A QoS 1 replay of message 5: the same samples again.
    lossy.seq = 4
    lossy.telemetry(base + 4)
    lossy.seq = 32

    def gaps_seen() -> bool:
        return historian_metric(tsdb, "gaps", station=lossy.name) == {"a": 1, "b": 1}

    wait_until(gaps_seen, 15, "both bridges to report the gap")
    assert historian_metric(tsdb, "missing", station=lossy.name) == {"a": 2, "b": 2}
    assert historian_metric(tsdb, "gaps", station=clean.name) == {"a": 0, "b": 0}
    wait_until(lambda: sum(historian_metric(tsdb, "duplicates", station=lossy.name).values()) == 1, 10,
               "the replayed message counted once as a duplicate")
    assert check_exactly_once(tsdb, [lossy, clean]) == sent_count([lossy, clean])
    logs = first.log() + second.log()
    assert f"station={lossy.name} first_missing=21 last_missing=22 missing=2" in logs
    assert first.stop() == 0 and second.stop() == 0


def test_reading_pauses_at_the_pending_bound_while_the_database_is_down(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, stations: Stations) -> None:
    """Memory stays bounded: at max_pending_messages the bridge stops reading and the broker queues."""
    config = bridge_config(tmp_path / "inproc", broker, tsdb, "inproc", mqtt={"max_pending_messages": 40})
    bridge = Bridge(load_historian_settings(config))
    tsdb.stop()
    bridge.start()
    try:
        [station] = stations(1)
        wait_until(lambda: bridge._client.is_connected(), 10, "the bridge to connect")
        time.sleep(0.5)
        base = time.time() - 3600
        for _ in range(400):
            station.telemetry(base + station.seq)
        time.sleep(3)
        assert 20 <= bridge.pending <= 40, bridge.pending
        tsdb.start()
        wait_all_stored(tsdb, [station], timeout=30)
        assert check_exactly_once(tsdb, [station]) == 4000
        wait_until(lambda: bridge.pending == 0, 10, "every message acknowledged")
    finally:
        bridge.close()
