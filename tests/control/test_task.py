"""ControllerTask: latest values in, write requests out, commands, reload and a PLC that goes away.

The station is the simulator, stepped by the test; what the task reads arrives the way pollers
deliver it (samples into ``LatestValues``), and its writes go to a stand-in for the write queue
that sets the simulated PLC's setpoint, or refuses while the PLC is "offline", as the real queue does.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from drivers.base import Quality
from gateway.bus import Bus
from gateway.config import GatewayConfig
from gateway.control.loader import load_controller_config
from gateway.control.memory import MemoryFile
from gateway.control.model import OutdoorSource, Signal
from gateway.control.task import ControllerTask
from gateway.latest import LatestValues
from gateway.samples import Sample, SampleBatch, Value
from gateway.writes import WriteResult
from sim.station import Station
from sim.weather import SyntheticProfile
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML, ROOT

STATION = GatewayConfig.model_validate(yaml.safe_load((ROOT / "config" / "station.yaml").read_text()))


@dataclass
class SimPlc:
    """Stands in for the write queue: writes land in the simulated PLC unless it is 'offline'."""

    station: Station
    online: bool = True
    requests: list[tuple[float, float, str]] = field(default_factory=list)

    async def write(self, tag: str, value: Value, origin: str) -> WriteResult:
        assert tag == "supply_setpoint" and isinstance(value, float)
        self.requests.append((self.station.time_s, value, origin))
        if not self.online:
            return WriteResult(tag, value, origin, False, "device 'plc' is offline")
        self.station.plc.supply_setpoint_c = value
        return WriteResult(tag, value, origin, True, "", value)


class Rig:
    """A station, the latest values a poller would have delivered, and the task under test."""

    def __init__(self, config_path: Path = CONTROLLER_YAML, memory: MemoryFile | None = None, *,
                 time_scale: float = 1.0, sample_clock: Callable[[], float] | None = None,
                 write_timeout_s: float = 30.0) -> None:
        """``sample_clock``: what the samples are stamped with (by default the station's time, the
        task's clock, which the task then uses for ages too)."""
        self.station = Station(start=datetime(2027, 1, 10, 16, tzinfo=UTC), seed=4,
                               weather=SyntheticProfile(mean_c=-3.0, seed=4))
        self.sample_clock = sample_clock or (lambda: self.station.time_s)
        self.latest = LatestValues(STATION, clock=self.sample_clock)
        self.plc = SimPlc(self.station)
        self.bus = Bus()
        self.published = self.bus.subscribe("test", maxsize=100_000)
        self.task = ControllerTask(load_controller_config(config_path), STATION, self.latest, self.plc,  # type: ignore[arg-type]
                                   self.bus, clock=lambda: self.station.time_s, memory=memory,
                                   time_scale=time_scale, sample_clock=sample_clock,
                                   write_timeout_s=write_timeout_s)

    def poll(self) -> None:
        m = self.station.measurements()
        t = self.sample_clock()
        values: dict[str, float] = {
            "outdoor_temp": m.outdoor_c, "supply_setpoint": self.station.plc.supply_setpoint_c,
            "secondary_supply_temp": m.secondary_supply_c, "primary_return_temp": m.primary_return_c,
            "meter_power": m.meter.power_kw,
        }
        samples = [Sample(tag, round(v, 1), t) for tag, v in values.items()]
        if not self.plc.online:
            samples = [Sample(s.tag, None, t, Quality.BAD, "timeout") if s.tag == "supply_setpoint" else s
                       for s in samples]
        for room in m.rooms:
            tag = "room_" + room.name.lower().replace("-", "_")
            value = room.temperature_c
            samples.append(Sample(f"{tag}_temp", value, t) if value is not None
                           else Sample(f"{tag}_temp", None, t, Quality.BAD, "no_value"))
            samples.append(Sample(f"{tag}_age", int(room.age_s), t))
        self.latest.update(SampleBatch("plc", "fast", tuple(samples)))

    async def run(self, seconds: float, step_s: float = 60.0) -> None:
        end = self.station.time_s + seconds
        while self.station.time_s < end:
            self.poll()
            await self.task.cycle()
            self.station.step(step_s)


async def test_the_task_reads_decides_writes_and_publishes() -> None:
    rig = Rig()
    await rig.run(3600)
    state = rig.task.state
    assert state is not None and state.outdoor_source is OutdoorSource.SENSOR
    circuit = state.circuits[0]
    assert circuit.rooms_valid == 6 and circuit.room_used_name
    writes = [r for r in rig.plc.requests]
    assert writes and all(origin == "controller" for _, _, origin in writes)
    assert rig.station.plc.supply_setpoint_c == pytest.approx(round(circuit.setpoint_c, 1), abs=0.051)
    assert all(value == round(value, 1) for _, value, _ in writes)  # register resolution
    published = [rig.published.get_nowait() for _ in range(60)]
    assert len(published) == 60 and all(item is not None for item in published)
    json.dumps(state.to_dict())


async def test_a_write_queue_that_never_answers_costs_a_write_never_the_controllers_cycles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(write_timeout_s=0.1)
    await rig.run(600)
    answering = rig.plc.write
    rig.plc.write = _never_answers  # type: ignore[method-assign] - a write queue that died
    rig.station.plc.supply_setpoint_c -= 3.0  # the controller wants to write
    while rig.published.get_nowait() is not None:
        pass
    states = []
    for _ in range(3):  # each cycle waits for its write at most write_timeout_s, then goes on
        rig.poll()
        states.append(await asyncio.wait_for(rig.task.cycle(), 1.0))
        rig.station.step(60.0)
    for state in states:
        circuit = state.circuits[0]
        assert circuit.written_c is None
        assert circuit.write_status == "failed: no answer from the write queue within 0.1 s"
        assert Signal.SETPOINT_NOT_WRITTEN in state.signals
    assert sum(r.getMessage() == "setpoint write got no answer; the controller goes on" for r in caplog.records) == 3
    published = []
    while (item := rig.published.get_nowait()) is not None:
        published.append(item)
    assert published == states  # every cycle's state was published
    rig.plc.write = answering  # type: ignore[method-assign]
    await rig.run(60)
    state = rig.task.state
    assert state is not None and state.circuits[0].write_status == "written"
    assert Signal.SETPOINT_NOT_WRITTEN not in state.signals


async def _never_answers(tag: str, value: Value, origin: str) -> WriteResult:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_unchanged_setpoints_are_not_rewritten() -> None:
    rig = Rig()
    await rig.run(1800)
    rig.poll()
    await rig.task.cycle()
    before = len(rig.plc.requests)
    rig.poll()
    state = await rig.task.cycle()  # same instant, same inputs: the setpoint did not move
    assert len(rig.plc.requests) == before and state.circuits[0].write_status == "unchanged"


async def test_dispatch_offset_commands_are_bounded_and_expire() -> None:
    rig = Rig()
    await rig.run(600)
    assert rig.task.set_dispatch_offset(7.0, 3600, "dispatch/li") == "offset_k: must be between -5 and 5 (controller.dispatch.max_offset_k)"
    assert rig.task.set_dispatch_offset(2.0, 10 * 86400, "dispatch/li") == "duration_s: must be above 0 and at most 86400 (controller.dispatch.max_duration_s)"
    assert rig.task.set_dispatch_offset(3.0, 1800, "dispatch/li") is None
    await rig.run(600)
    state = rig.task.state
    assert state is not None and state.circuits[0].offset_k == 3.0 and state.circuits[0].offset_origin == "dispatch/li"
    assert Signal.DISPATCH_OFFSET_ACTIVE in state.signals
    await rig.run(1500)  # past its expiry
    state = rig.task.state
    assert state is not None and state.circuits[0].offset_k == 0.0


async def test_dispatch_outdoor_is_the_first_fallback() -> None:
    rig = Rig()
    await rig.run(600)
    assert rig.task.set_dispatch_outdoor(99.0) == "value: must be between -45 and 45"
    assert rig.task.set_dispatch_outdoor(-4.0) is None
    rig.station.faults.sensor_open("outdoor")
    rig.poll()
    rig.latest.update(SampleBatch("plc", "fast", (Sample("outdoor_temp", 850.0, rig.station.time_s, Quality.BAD,
                                                         "out_of_range"),)))
    state = await rig.task.cycle()
    assert (state.outdoor_source, state.outdoor_c) == (OutdoorSource.DISPATCH, -4.0)
    assert state.outdoor_raw_c == 850.0 and Signal.OUTDOOR_FROM_DISPATCH in state.signals


async def test_an_unreachable_plc_gets_one_current_setpoint_when_it_returns() -> None:
    rig = Rig()
    await rig.run(3600)
    rig.plc.online = False
    await rig.run(2 * 3600)  # two hours: the controller keeps deciding, every write is refused
    state = rig.task.state
    assert state is not None and state.circuits[0].write_status == "refused: device 'plc' is offline"
    assert Signal.SETPOINT_NOT_WRITTEN in state.signals
    refused = len(rig.plc.requests)
    rig.plc.online = True
    await rig.run(60)
    after = rig.plc.requests[refused:]
    assert len(after) == 1  # one write for one cycle: no backlog of two hours of setpoints
    held_before = rig.task.state
    assert held_before is not None and held_before.circuits[0].write_status == "written"
    assert abs(after[0][1] - rig.station.plc.supply_setpoint_c) < 0.05


async def test_a_bad_reload_is_refused_and_the_old_curve_keeps_running(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR / "curves", tmp_path / "curves")
    shutil.copy(CONTROLLER_YAML, tmp_path / "controller.yaml")
    rig = Rig(tmp_path / "controller.yaml")
    await rig.run(3600)
    identity = "demo-01-radiators v1 (2026-10-20)"
    assert rig.task.state is not None and rig.task.state.circuits[0].curve == identity
    curve_file = tmp_path / "curves" / "radiators-75-50.yaml"
    good = curve_file.read_text()
    curve_file.write_text(good.replace("version: 1", "version: 2").replace("design_supply_c: 75", "design_supply_c: 40"))
    reason = rig.task.reload(tmp_path / "controller.yaml")
    assert reason is not None and "design temperatures must satisfy supply > return > room" in reason
    assert "radiators-75-50.yaml" in reason
    await rig.run(3600)
    assert rig.task.state is not None and rig.task.state.circuits[0].curve == identity  # still v1
    curve_file.write_text(good.replace("version: 1", "version: 2").replace("design_supply_c: 75", "design_supply_c: 70"))
    assert rig.task.reload(tmp_path / "controller.yaml") is None
    await rig.run(60)
    assert rig.task.state is not None and rig.task.state.circuits[0].curve == "demo-01-radiators v2 (2026-10-20)"


async def test_reload_refuses_unknown_tags_and_broken_settings(tmp_path: Path) -> None:
    shutil.copytree(CONFIG_DIR / "curves", tmp_path / "curves")
    rig = Rig()
    bad = CONTROLLER_YAML.read_text()
    (tmp_path / "typo.yaml").write_text(bad.replace("tag: primary_return_temp", "tag: primary_retrun_temp"))
    reason = rig.task.reload(tmp_path / "typo.yaml")
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "tag: primary_return_temp" in text)
    assert reason is not None and reason.startswith(f"{tmp_path / 'typo.yaml'}:{line}:"), reason
    assert reason.endswith(": controller.circuits.radiators.return_limit.tag: unknown tag 'primary_retrun_temp' "
                           "(did you mean 'primary_return_temp'?)"), reason  # in the words of `heatgw check`
    (tmp_path / "night.yaml").write_text(bad.replace("night_c: 16", "night_c: 19"))
    reason = rig.task.reload(tmp_path / "night.yaml")
    assert reason is not None and "night.yaml:" in reason and "night_c must not be above day_c" in reason


def test_unknown_tags_are_refused_at_start() -> None:
    config = load_controller_config(CONTROLLER_YAML)
    station = STATION.model_copy(update={"devices": {"plc": STATION.devices["plc"]}})  # no heat meter
    from gateway.yaml_source import ConfigError
    with pytest.raises(ConfigError, match="unknown tag 'meter_power'"):
        ControllerTask(config, station, LatestValues(station), SimPlc(Station()), Bus())  # type: ignore[arg-type]
