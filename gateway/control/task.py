"""``ControllerTask``: the pure controller wired to the gateway, one cycle every ``cycle_s``.

Each cycle it reads the latest values (never the devices: the poller is the only reader), turns
them into ``ControllerInputs`` with an honest verdict per value, runs ``Controller.step``, writes
each circuit's setpoint through the write queue (the one write path, with its limits and
read-back) when it moved by at least the register's resolution, and publishes the
``ControllerState`` on the bus. It also holds what the MQTT command handlers hand it (dispatch
offset, dispatch outdoor temperature) and swaps in a new configuration on SIGHUP (``restation``).

If the PLC is unreachable the write queue refuses at once and the cycle goes on: the next cycle
decides again from fresh values, and the PLC gets one current setpoint when it returns, moved at
most ``max_step`` from what it holds, never a backlog.

With a memory file, what the controller has learned is restored at start and saved every
``MEMORY_SAVE_EVERY_S`` and when the task stops (see ``gateway.control.memory``); with an
operating-point log, every cycle's state goes into the hourly record of where the station ran.

Time: ``clock`` is the controller's time (schedules, filters, expiries, the memory's age) and
``sample_clock`` the one the pollers stamp samples with. On a station both are the wall clock. The
demo runs the controller on the simulator's accelerated time (``time_scale`` simulated seconds per
wall second) while the pollers stamp wall time, so a sample's age is the wall time since it was
read times ``time_scale``, and a cycle of ``cycle_s`` controller seconds lasts ``cycle_s /
time_scale`` of the event loop's time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from drivers.base import Quality
from gateway.bus import Bus
from gateway.acquisition.models import WriteLimits
from gateway.config import GatewayConfig
from gateway.control.controller import Controller
from gateway.control.loader import describe_problems, tag_problems
from gateway.control.memory import MemoryFile
from gateway.control.operating_points import OperatingPointLog
from gateway.control.model import (
    NO_READING,
    CircuitInputs,
    CircuitState,
    ControllerInputs,
    ControllerState,
    DispatchOffset,
    OutdoorSource,
    Reading,
    Signal,
)
from gateway.control.settings import CircuitSettings, ControllerConfig, ControllerSettings
from gateway.latest import LatestValues
from gateway.logs import kv
from gateway.preflight import load_controller_for
from gateway.writes import WriteQueue
from gateway.yaml_source import ConfigError

log = logging.getLogger(__name__)

ORIGIN = "controller"
MEMORY_SAVE_EVERY_S = 600.0
"""A crash loses at most this much learning: ten minutes of a trim that moves over hours."""
WRITE_TIMEOUT_S = 30.0
"""The longest a cycle waits for the write queue's answer (the bound of an MQTT command, too):
a write queue that never answers must cost the controller one write, never its cycles."""


class ControllerTask:
    """Runs the controller against the gateway's latest values and write queue."""

    def __init__(
        self,
        config: ControllerConfig,
        station: GatewayConfig,
        latest: LatestValues,
        writes: WriteQueue,
        bus: Bus,
        *,
        clock: Callable[[], float] = time.time,
        memory: MemoryFile | None = None,
        operating_points: OperatingPointLog | None = None,
        time_scale: float = 1.0,
        sample_clock: Callable[[], float] | None = None,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        """Check the configuration against the station's tags (ConfigError if a tag is unknown),
        and restore what ``memory`` holds. ``operating_points``, if given, gets every cycle's state
        (the hourly record ``heatgw curve --points`` draws).

        ``time_scale`` is how many ``clock`` seconds pass per second of the event loop and of
        ``sample_clock`` (which defaults to ``clock``: samples stamped on the controller's own time).
        ``write_timeout_s`` (event-loop seconds) bounds the wait for each write's answer.
        """
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale must be a positive number, got {time_scale}")
        self._station = station
        self._tags = station.tags()
        problems = tag_problems(config.settings, {tag: cfg.writable is not None for tag, (_, cfg) in self._tags.items()})
        if problems:
            raise ConfigError(describe_problems(problems))
        self._controller = Controller(config, ZoneInfo(station.station.timezone))
        self._latest = latest
        self._writes = writes
        self._bus = bus
        self._clock = clock
        self._sample_clock = clock if sample_clock is None else sample_clock
        self._time_scale = time_scale
        self._write_timeout_s = write_timeout_s
        self._offset: DispatchOffset | None = None
        self._dispatch_outdoor: tuple[float, float] | None = None  # (value, received at)
        self._state: ControllerState | None = None
        self.progressed: float | None = None  # event-loop time the last cycle began (the watchdog)
        self._read_back: dict[str, tuple[float, float]] = {}  # setpoint tag -> (value, sample_clock time)
        self._memory = memory
        self._operating_points = operating_points
        self._saved_at = self._clock()
        if memory is not None:
            self._restore(memory)

    def _restore(self, memory: MemoryFile) -> None:
        saved = memory.load()
        if saved is None:
            return
        dropped = self._controller.restore(saved, self._clock())
        log.info("controller memory restored", extra=kv(
            file=memory.path, saved_h_ago=round((self._clock() - saved.saved_at) / 3600.0, 1),
            circuits=", ".join(saved.circuits), dropped="; ".join(dropped) or "nothing"))

    def save_memory(self) -> bool:
        """Save what the controller has learned now (False without a memory file, or if it failed)."""
        self._saved_at = self._clock()
        return self._memory is not None and self._memory.save(self._controller.memory(self._saved_at))

    @property
    def settings(self) -> ControllerSettings:
        return self._controller.config.settings

    @property
    def state(self) -> ControllerState | None:
        """The state published by the last cycle."""
        return self._state

    def patience_s(self) -> float:
        """The longest between two cycle starts when nothing is stuck: the wait for first values,
        or a cycle period, plus a write per circuit that takes its whole ``write_timeout_s``."""
        period = self.settings.cycle_s / self._time_scale
        return 2 * period + self._write_timeout_s * len(self.settings.circuits)

    def stalled(self, now: float) -> bool:
        """Whether no cycle began within ``patience_s`` (event-loop time ``now``)."""
        return self.progressed is not None and now - self.progressed > self.patience_s()

    # --- for the MQTT command handlers and SIGHUP ---

    def set_dispatch_offset(self, offset_k: float, duration_s: float, origin: str) -> str | None:
        """Shift every circuit's curve by ``offset_k`` K for ``duration_s`` s; None, or why it was refused.

        An offset of 0 cancels the one in force. The offset ends by itself at expiry.
        """
        bounds = self.settings.dispatch
        if not (math.isfinite(offset_k) and math.isfinite(duration_s)):
            reason = "offset_k and duration_s must be finite numbers"
        elif abs(offset_k) > bounds.max_offset_k:
            reason = (f"offset_k: must be between {-bounds.max_offset_k:g} and {bounds.max_offset_k:g} "
                      "(controller.dispatch.max_offset_k)")
        elif offset_k != 0 and not 0 < duration_s <= bounds.max_duration_s:
            reason = (f"duration_s: must be above 0 and at most {bounds.max_duration_s:g} "
                      "(controller.dispatch.max_duration_s)")
        else:
            reason = ""
        if reason:
            log.warning("dispatch offset refused", extra=kv(offset_k=offset_k, duration_s=duration_s,
                                                            origin=origin, reason=reason))
            return reason
        if offset_k == 0:
            self._offset = None
            log.info("dispatch offset cancelled", extra=kv(origin=origin))
            return None
        self._offset = DispatchOffset(float(offset_k), self._clock() + duration_s, origin)
        log.info("dispatch offset set", extra=kv(offset_k=offset_k, duration_s=duration_s, origin=origin,
                                                 expires=round(self._offset.expires_at, 3)))
        return None

    def set_dispatch_outdoor(self, value: float, origin: str = "dispatch") -> str | None:
        """The outdoor temperature dispatch sends (the fallback after the station sensor); None or why refused."""
        low, high = self.settings.outdoor.range_c
        if not (math.isfinite(value) and low <= value <= high):
            reason = f"value: must be between {low:g} and {high:g}"
            log.warning("dispatch outdoor refused", extra=kv(value=value, origin=origin, reason=reason))
            return reason
        self._dispatch_outdoor = (float(value), self._clock())
        log.debug("dispatch outdoor received", extra=kv(value=value, origin=origin))
        return None

    def reload(self, path: Path) -> str | None:
        """Re-read settings and curves from ``path``; None, or why it was refused.

        A refused file changes nothing: the running configuration stays in force. An accepted one
        keeps what the controller has learned (filters, the ramp position, heat-up factors, and the
        trim integrals of every circuit whose curve is the same one). The gateway's SIGHUP reloads
        the station file with the controller (``gateway.reload``), which reads both on a worker
        thread and hands the controller its part through ``restation``.
        """
        try:
            config = self.load_for_reload(path)
        except ConfigError as exc:
            return self._refused(path, exc)
        self._apply(path, config)
        return None

    def load_for_reload(self, path: Path) -> ControllerConfig:
        """Read and check ``path`` against the station's tags; ConfigError if refused. Touches no
        running state, so it may run on any thread."""
        return load_controller_for(self._station, path)

    def restation(self, station: GatewayConfig, config: ControllerConfig, path: Path) -> None:
        """A station reload (SIGHUP): the station's tags as they are now, and the controller
        ``config`` loaded and checked against them (``gateway.preflight.load_startup``), applied
        as a controller reload is: what the controller has learned is kept."""
        self._station, self._tags = station, station.tags()
        self._apply(path, config)

    def _refused(self, path: Path, exc: ConfigError) -> str:
        reason = "\n".join(exc.messages)
        log.error("controller reload refused, the running configuration stays in force",
                  extra=kv(file=path, reason=reason))
        return reason

    def _apply(self, path: Path, config: ControllerConfig) -> None:
        reset = self._controller.configure(config)
        log.info("controller reloaded", extra=kv(file=path, curves=", ".join(
            f"{name}={curve.identity}" for name, curve in config.curves.items()), reset="; ".join(reset) or "nothing"))

    # --- the cycle ---

    async def run(self) -> None:
        """Run a cycle every ``cycle_s`` on an absolute grid, forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        self.progressed = loop.time()
        await self._wait_for_first_values()
        next_at = loop.time()
        try:
            while True:
                self.progressed = loop.time()
                try:
                    await self.cycle()
                except Exception:
                    # A bug in one cycle must not stop the station's controller for good; the PLC
                    # keeps its last setpoint meanwhile, and the log says what happened.
                    log.exception("controller cycle failed")
                period = self.settings.cycle_s / self._time_scale
                next_at += period
                now = loop.time()
                if next_at < now:
                    next_at = now + period - (now - next_at) % period
                await asyncio.sleep(next_at - now)
        finally:
            self.save_memory()
            if self._operating_points is not None:
                self._operating_points.close()

    async def _wait_for_first_values(self) -> None:
        """After start-up, give the pollers a cycle to deliver before deciding on nothing."""
        deadline = self._clock() + self.settings.cycle_s
        needed = [self.settings.outdoor.tag, *(c.setpoint_tag for c in self.settings.circuits.values())]
        while self._clock() < deadline and any(self._latest.get(tag) is None for tag in needed):
            await asyncio.sleep(0.1)

    async def cycle(self) -> ControllerState:
        """One cycle: read, decide, write, publish. Returns the published state."""
        now = self._clock()
        if self._offset is not None and now >= self._offset.expires_at:
            log.info("dispatch offset expired", extra=kv(offset_k=self._offset.offset_k, origin=self._offset.origin))
            self._offset = None
        decision = self._controller.step(self._inputs(now), now)
        circuits: list[CircuitState] = []
        signals = list(decision.state.signals)
        for circuit in decision.state.circuits:
            written, status = await self._write(circuit.circuit, decision.setpoints[circuit.circuit])
            if written is None and status.startswith(("refused", "failed")) and Signal.SETPOINT_NOT_WRITTEN not in signals:
                signals.append(Signal.SETPOINT_NOT_WRITTEN)
            circuits.append(dataclasses.replace(circuit, written_c=written, write_status=status))
        state = dataclasses.replace(decision.state, circuits=tuple(circuits), signals=tuple(signals))
        self._log_changes(state)
        self._state = state
        await self._bus.publish(state)
        if self._operating_points is not None:
            self._operating_points.add(state)
        if now - self._saved_at >= MEMORY_SAVE_EVERY_S:
            self.save_memory()
        return state

    def _inputs(self, now: float) -> ControllerInputs:
        s = self.settings
        dispatch = Reading.missing("none received")
        if self._dispatch_outdoor is not None:
            value, at = self._dispatch_outdoor
            dispatch = Reading(value, True, now - at)
        primary = s.outdoor.primary_supply_tag
        return ControllerInputs(
            outdoor=self._reading(s.outdoor.tag),
            primary_supply_c=NO_READING if primary is None else self._reading(primary),
            dispatch_outdoor=dispatch,
            offset=self._offset,
            circuits={name: self._circuit_inputs(circuit) for name, circuit in s.circuits.items()},
        )

    def _circuit_inputs(self, circuit: CircuitSettings) -> CircuitInputs:
        rooms: dict[str, Reading] = {}
        for name, sensor in circuit.rooms.items():
            reading = self._reading(sensor.temp_tag)
            if sensor.age_tag is not None and reading.ok:
                age = self._reading(sensor.age_tag)
                if age.usable is None:
                    reading = Reading(reading.value, False, reason=f"sensor age unknown: {age.reason}")
                else:
                    # the concentrator's age at the poll, plus the time since that poll
                    reading = Reading(reading.value, True, age.usable + age.age_s)
            rooms[name] = reading
        optional = {"supply_c": circuit.supply_tag,
                    "primary_return_c": circuit.return_limit.tag if circuit.return_limit else None,
                    "power_kw": circuit.power_limit.tag if circuit.power_limit else None,
                    "flow_m3h": circuit.flow_limit.tag if circuit.flow_limit else None}
        circulation = circuit.circulation
        flags = {} if circulation is None else {
            "pump_fault": circulation.pump_fault_tag, "pump_running": circulation.pump_running_tag}
        if circulation is not None:
            optional["circulation_m3h"] = circulation.flow_tag
        return CircuitInputs(
            rooms=rooms,
            setpoint_c=self._held(circuit.setpoint_tag),
            **{field: self._reading(tag) for field, tag in optional.items() if tag is not None},
            **{field: self._flag(tag) for field, tag in flags.items() if tag is not None},
        )

    def _flag(self, tag: str) -> Reading:
        """A bool tag's latest sample as 1.0 (true) or 0.0, or not usable with the reason."""
        sample = self._latest.get(tag)
        if sample is None:
            return Reading.missing("no sample yet")
        if sample.quality is not Quality.GOOD or not isinstance(sample.value, bool | int):
            return Reading(None, False, reason=sample.quality.value + (f": {sample.reason}" if sample.reason else ""))
        return Reading(1.0 if sample.value else 0.0, True, self._age(sample.timestamp))

    def _reading(self, tag: str) -> Reading:
        """A tag's latest sample as a Reading: good and numeric, or not usable with the reason."""
        sample = self._latest.get(tag)
        if sample is None:
            return Reading.missing("no sample yet")
        if sample.quality is not Quality.GOOD:
            reason = sample.quality.value + (f": {sample.reason}" if sample.reason else "")
            return Reading(sample.value if isinstance(sample.value, float | int) else None, False, reason=reason)
        if isinstance(sample.value, bool) or not isinstance(sample.value, int | float):
            return Reading.missing(f"not a number: {sample.value!r}")
        return Reading(float(sample.value), True, self._age(sample.timestamp))

    def _held(self, tag: str) -> Reading:
        """The setpoint the PLC holds: its latest poll, or the read-back of this task's last write
        when that is the newer reading of the register.

        On a station the setpoint is polled many times per cycle, so the poll is always newer and
        this is the poll. On accelerated time (the demo: ten cycles per poll) the poll lags several
        cycles behind the writes, and the controller would ramp from a setpoint the PLC no longer
        holds (and resynchronise to it, ``RESYNC_K``), writing a saw-tooth.
        """
        reading = self._reading(tag)
        if tag not in self._read_back or not reading.ok:
            return reading
        value, at = self._read_back[tag]
        age = self._age(at)
        return Reading(value, True, age) if age < reading.age_s else reading

    def _age(self, timestamp: float) -> float:
        """Controller seconds since ``timestamp`` (a ``sample_clock`` time), never negative."""
        return max(0.0, (self._sample_clock() - timestamp) * self._time_scale)

    async def _write(self, circuit: str, decided: float) -> tuple[float | None, str]:
        """Write a circuit's setpoint if it moved by a register step; (value written, status)."""
        if not self.settings.enabled:
            return None, "controller disabled: decision not written"
        tag = self.settings.circuits[circuit].setpoint_tag
        tag_config = self._tags[tag][1]
        limits = tag_config.writable
        assert limits is not None  # checked in __init__ / reload
        resolution = tag_config.resolution()
        held = self._held(tag).usable
        value = _writable(decided, held, limits, resolution)
        if held is not None and abs(value - held) < resolution / 2:
            return None, "unchanged"
        try:
            result = await asyncio.wait_for(self._writes.write(tag, value, origin=ORIGIN), self._write_timeout_s)
        except TimeoutError:
            reason = f"no answer from the write queue within {self._write_timeout_s:g} s"
            log.error("setpoint write got no answer; the controller goes on", extra=kv(
                circuit=circuit, tag=tag, value=value, reason=reason))
            return None, f"failed: {reason}"
        if result.accepted:
            if isinstance(result.readback, int | float):
                self._read_back[tag] = (float(result.readback), self._sample_clock())
            return value, "written"
        return None, f"refused: {result.reason}"

    def _log_changes(self, state: ControllerState) -> None:
        """Log what an operator needs to know when it changes, not every cycle."""
        previous = self._state
        if previous is None or previous.outdoor_source is not state.outdoor_source:
            level = logging.INFO if state.outdoor_source is OutdoorSource.SENSOR else logging.WARNING
            log.log(level, "outdoor temperature source", extra=kv(
                source=state.outdoor_source.value, value=state.outdoor_c, fault=state.outdoor_fault))
        if previous is None or previous.season is not state.season:
            log.info("season mode", extra=kv(mode=state.season.value, reason=state.season_reason))
        before = set() if previous is None else set(previous.signals)
        for signal in state.signals:
            if signal not in before:
                log.warning("controller signal raised", extra=kv(signal=signal.value))
        for signal in before - set(state.signals):
            log.info("controller signal cleared", extra=kv(signal=signal.value))
        for circuit in state.circuits:
            log.debug("controller cycle", extra=kv(
                circuit=circuit.circuit, outdoor=state.outdoor_c, curve=circuit.curve_c, trim=circuit.trim_k,
                offset=circuit.offset_k, setpoint=circuit.setpoint_c, written=circuit.written_c,
                status=circuit.write_status))


def _writable(decided: float, held: float | None, limits: WriteLimits, resolution: float) -> float:
    """The decision as the PLC will accept it: inside the tag's limits, one max_step from what it holds."""
    low, high = limits.min, limits.max
    if held is not None and limits.max_step is not None:
        low, high = max(low, held - limits.max_step), min(high, held + limits.max_step)
    value = round(round(min(high, max(low, decided)) / resolution) * resolution, 6)
    if value > high + 1e-9:  # rounding must not step over a limit
        value = round(value - resolution, 6)
    elif value < low - 1e-9:
        value = round(value + resolution, 6)
    return value
