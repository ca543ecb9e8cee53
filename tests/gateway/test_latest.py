"""LatestValues: newest sample per tag, STALE once it outlives its refresh interval."""

from __future__ import annotations

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
