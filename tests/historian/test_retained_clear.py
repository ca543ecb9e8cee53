"""A station deletes the retained state of an alarm that no longer exists with an empty retained
message on ``alarms/<id>`` (MQTT's way): against a real Mosquitto and VictoriaMetrics, the
bridge takes it as what it is, neither a contract violation nor something to store, while the
alarm's ``removed`` end, sent before it, is stored with its own state code."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tooling.devstack import Mosquitto, VictoriaMetrics
from gateway.historian.bridge import Bridge
from gateway.historian.schema import STATE_CODES
from gateway.historian.settings import load_historian_settings
from tests.historian.conftest import Station, bridge_config, stored, wait_until


def test_an_empty_retained_message_on_an_alarm_topic_is_ignored_not_quarantined_and_the_removal_is_stored(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics, stations: Callable[..., list[Station]],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.historian")
    config = bridge_config(tmp_path / "inproc", broker, tsdb, "clear", sequence={"meta_wait_s": 0})
    bridge = Bridge(load_historian_settings(config))
    bridge.start()
    try:
        [station] = stations(1)
        wait_until(lambda: station.name in bridge._metas and bridge._client.is_connected(), 10, "the bridge ready")
        assert station.client is not None
        base = f"heatgw/{station.name}"
        removed_at = round(time.time() - 60, 3)
        ends = [(f"{base}/events", json.dumps({"seq": station.telemetry(removed_at - 1) + 1, "ts": removed_at,
                                              "kind": "alarm", "id": "overtemp", "state": "removed",
                                              "previous": "active", "priority": "high"}).encode(), False),
                (f"{base}/alarms/overtemp", b"", True),
                (f"{base}/events/open", b"", True)]
        station.seq += 1  # the removal took the number after the telemetry's
        for topic, payload, retain in ends:
            station.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
        station.telemetry(removed_at + 1)  # after the clears, from the same station: processed after them
        wait_until(lambda: bridge.stats.written_values >= 2 * station.tags + 1 and bridge.pending == 0,
                   15, "everything written and acknowledged")
        assert bridge.quarantined == 0 and bridge.stats.invalid_messages == 0
        assert not bridge.failed.is_set()
    finally:
        bridge.close()
    cleared = [r for r in caplog.records if r.getMessage() == "retained state cleared by its station; nothing to store"]
    assert len(cleared) == 2 and all(r.levelno == logging.DEBUG for r in cleared)
    [alarm] = tsdb.export('{__name__="alarm_state",alarm="overtemp"}')
    assert alarm["values"] == [STATE_CODES["removed"]] and alarm["timestamps"] == [round(removed_at * 1000)]
    assert stored(tsdb, "quality"), "the telemetry around the clears was written"
