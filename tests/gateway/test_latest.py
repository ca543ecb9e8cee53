"""LatestValues: newest sample per tag, STALE once it outlives its refresh interval."""

from __future__ import annotations

from typing import Any

from drivers.base import Quality
from gateway.latest import LatestValues
from gateway.samples import DeviceStatus, Sample, SampleBatch
from tests.gateway.conftest import Clock, station_config


def test_good_value_turns_stale_after_two_intervals_plus_timeout() -> None:
    config = station_config(5020)  # outdoor_temp: group fast (1 s), plc timeout 1 s, 1 retry
    clock = Clock()
    latest = LatestValues(config, clock)
    assert latest.get("outdoor_temp") is None
    latest.update(SampleBatch("plc", "fast", (Sample("outdoor_temp", -3.5, 1000.0),)))
    clock.now = 1003.9
    fresh = latest.get("outdoor_temp")
    assert fresh is not None and fresh.quality is Quality.GOOD and fresh.value == -3.5
    clock.now = 1004.1
    stale = latest.get("outdoor_temp")
    assert stale is not None and stale.quality is Quality.STALE and stale.reason == "not_refreshed"
    assert stale.value == -3.5


def test_bad_values_stay_bad_and_device_state_is_tracked() -> None:
    latest = LatestValues(station_config(5020), Clock())
    latest.update(SampleBatch("plc", "fast", (Sample("outdoor_temp", None, 1000.0, Quality.BAD, "timeout"),)))
    latest.update(DeviceStatus("plc", False, 1000.0, "timeout"))
    sample = latest.get("outdoor_temp")
    assert sample is not None and sample.quality is Quality.BAD and sample.reason == "timeout"
    assert latest.device_online == {"plc": False}


def test_a_reload_forgets_removed_tags_and_judges_kept_ones_by_their_new_interval() -> None:
    clock = Clock()
    latest = LatestValues(station_config(5020), clock)
    latest.update(SampleBatch("plc", "fast", (Sample("outdoor_temp", -3.5, 1000.0),)))
    latest.update(SampleBatch("heat_meter", "slow", (Sample("meter_flow", 12.0, 1000.0),)))

    def without_meter(data: dict[str, Any]) -> None:
        data["groups"]["fast"]["interval_s"] = 0.5
        del data["devices"]["heat_meter"]
        del data["alarms"]["definitions"]["heat_meter_lost"]
        del data["report"]["energy_tag"]

    latest.reconfigure(station_config(5020, without_meter))
    assert latest.get("meter_flow") is None
    clock.now = 1003.1  # fresh for 2 x 1 s + 2 s before; 2 x 0.5 s + 2 s now
    kept = latest.get("outdoor_temp")
    assert kept is not None and kept.quality is Quality.STALE
    latest.update(SampleBatch("heat_meter", "slow", (Sample("meter_flow", 12.0, 1003.0),)))  # polled before the reload
    late = latest.get("meter_flow")
    assert late is not None and late.quality is Quality.STALE, "a removed tag's value is never current"
