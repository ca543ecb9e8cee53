"""The ``alarms:`` section of the station configuration: what is watched, how urgently, and what
the operator is told.

An alarm is declared once, under its id, with the condition that raises it (``kind``), its
priority, the delays that keep a flickering value from raising it twenty times, and a message an
operator at 3 a.m. understands (Chinese or English, UTF-8 end to end). Ids become MQTT topic
levels (``<prefix>/<station>/alarms/<id>``) and historian tags, so they are lower-case identifiers.

The controller's signals (outdoor sensor fault, limiter active for long, morning target missed,
setpoint not written, circulation lost) are alarms too, with the defaults in
``CONTROLLER_SIGNAL_DEFAULTS``; a station overrides one by declaring a ``signal`` alarm for the
same signal, or turns them all off with ``controller_signals: false``.
"""

from __future__ import annotations

from enum import Enum
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from gateway.config_base import Strict, StrictTagged, plain_fields
from gateway.control.model import Signal

AlarmId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
TagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Message = Annotated[str, StringConstraints(min_length=1, max_length=200)]

FLOOD_ALARM_ID = "alarm_flood"
"""The engine's own summary alarm while the station floods the operator; no station may use it."""

RESERVED_IDS = frozenset({FLOOD_ALARM_ID, "open"})
"""``open`` is the retained summary topic ``events/open``; ``alarm_flood`` is the flood summary."""


class Priority(str, Enum):
    """How fast someone must act (IEC 62682 priorities). Ordered: ``rank`` 0 is the most urgent."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


class AlarmBase(StrictTagged):
    """What every alarm has, whatever raises it. (``StrictTagged``: ``kind`` is the union's tag;
    every other field gets ``Strict``'s rules through ``plain_fields``.)"""

    _plain = plain_fields("priority", "message", "on_delay_s", "off_delay_s", "suppressed_by", "out_of_service",
                          "tag", "level", "limit", "deadband", "abnormal", "limit_per_min", "reference", "after_s",
                          "device", "signal")

    priority: Priority
    message: Message
    on_delay_s: float = Field(default=0.0, ge=0, le=86_400, description="condition must hold this long")
    off_delay_s: float = Field(default=0.0, ge=0, le=86_400, description="condition must be gone this long")
    suppressed_by: tuple[AlarmId, ...] = Field(default=(), description="alarms whose activity explains this one")
    out_of_service: bool = Field(default=False, description="taken out of service by configuration")


class LimitAlarm(AlarmBase):
    """An analogue value beyond a limit: ``hh``/``h`` above it, ``l``/``ll`` below it. It returns
    only once the value is back by ``deadband`` (hysteresis), so a value resting on the limit raises
    it once."""

    kind: Literal["threshold"]
    tag: TagName
    level: Literal["hh", "h", "l", "ll"]
    limit: float
    deadband: float = Field(default=0.0, ge=0)

    @property
    def high(self) -> bool:
        return self.level in ("hh", "h")


class DiscreteAlarm(AlarmBase):
    """A bool tag in its abnormal state: pump fault, pit flooded, an interlock trip."""

    kind: Literal["discrete"]
    tag: TagName
    abnormal: bool = True


class RateAlarm(AlarmBase):
    """A value changing faster than ``limit_per_min`` (either direction) between two good samples."""

    kind: Literal["rate"]
    tag: TagName
    limit_per_min: float = Field(gt=0)
    deadband: float = Field(default=0.0, ge=0)


class DeviationAlarm(AlarmBase):
    """A value away from its reference (secondary supply against its setpoint) by more than
    ``limit`` in either direction; usually with a long ``on_delay_s`` (Samson: 10 K for 30 min)."""

    kind: Literal["deviation"]
    tag: TagName
    reference: TagName
    limit: float = Field(gt=0)
    deadband: float = Field(default=0.0, ge=0)


class QualityAlarm(AlarmBase):
    """A tag without a good value (bad, stale, or no sample at all) for longer than ``after_s``.

    ``after_s`` must be longer than the tag's normal pause (``GatewayConfig.max_silence_s``: twice
    its poll interval plus its device's full timeout): a device that stops answering is declared
    lost within that time, and its communication alarm then suppresses this one; a shorter
    ``after_s`` would raise the silent tag before the device is known to be lost."""

    kind: Literal["quality"]
    tag: TagName
    after_s: float = Field(gt=0, le=86_400)


class CommAlarm(AlarmBase):
    """A device that stopped answering (``DeviceStatus`` from its poller). Every alarm on the
    device's tags is suppressed by it automatically: one lost PLC is one alarm, not forty."""

    kind: Literal["comm"]
    device: TagName


class SignalAlarm(AlarmBase):
    """A condition the controller reports in its state (``ControllerState.signals``)."""

    kind: Literal["controller"]
    signal: Signal


AlarmConfig = Annotated[LimitAlarm | DiscreteAlarm | RateAlarm | DeviationAlarm | QualityAlarm | CommAlarm
                        | SignalAlarm, Field(discriminator="kind")]
TagAlarm = LimitAlarm | DiscreteAlarm | RateAlarm | DeviationAlarm | QualityAlarm


class FloodSettings(Strict):
    """An alarm flood (ISA-18.2: more than 10 alarms in 10 minutes per operator) hides the alarm
    that matters. Beyond ``max_activations`` in ``window_s``, activations below ``annunciate``
    priority are summarised in one ``alarm_flood`` alarm and counted, never dropped: every
    transition is still recorded and published on the events topic."""

    max_activations: int = Field(default=10, ge=1, le=10_000)
    window_s: float = Field(default=600.0, gt=0, le=86_400)
    annunciate: Priority = Field(default=Priority.HIGH, description="this priority and above stay individual")


class AlarmSettings(Strict):
    """The station's ``alarms:`` section."""

    flood: FloodSettings = FloodSettings()
    max_shelve_s: float = Field(default=8 * 3600, gt=0, le=86_400, description="longest an operator may shelve")
    controller_signals: bool = Field(default=True, description="raise the controller's signals as alarms")
    definitions: dict[AlarmId, AlarmConfig] = Field(default_factory=dict)

    def problems(self, tag_devices: Mapping[str, str],
                 max_silence_s: Mapping[str, float]) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references the models cannot check alone: tags, devices, suppressors, cycles, and
        quality alarms that would fire on a tag's normal pause (``GatewayConfig.max_silence_s``)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        devices = set(tag_devices.values())
        for alarm_id, alarm in self.definitions.items():
            path: tuple[str | int, ...] = ("alarms", "definitions", alarm_id)
            if alarm_id in RESERVED_IDS:
                found.append((path, f"the id {alarm_id!r} is reserved"))
            for name in ("tag", "reference"):
                tag = getattr(alarm, name, None)
                if tag is not None and tag not in tag_devices:
                    found.append(((*path, name), f"unknown tag {tag!r}"))
            if isinstance(alarm, QualityAlarm) and alarm.after_s <= max_silence_s.get(alarm.tag, 0.0):
                found.append(((*path, "after_s"), f"must be longer than {max_silence_s[alarm.tag]:g} s, the longest "
                              f"normal pause of {alarm.tag!r} (twice its poll interval plus its device's full timeout)"))
            if isinstance(alarm, CommAlarm) and alarm.device not in devices:
                found.append(((*path, "device"), f"unknown device {alarm.device!r} (defined: {', '.join(sorted(devices))})"))
            for index, other in enumerate(alarm.suppressed_by):
                if other not in self.definitions:
                    found.append(((*path, "suppressed_by", index), f"unknown alarm {other!r}"))
        if not found and (cycle := _cycle({a: c.suppressed_by for a, c in self.definitions.items()})):
            found.append((("alarms", "definitions", cycle[0], "suppressed_by"),
                          "suppression cycle: " + " -> ".join(cycle)))
        return found


class SignalDefault(Strict):
    """The alarm a controller signal raises unless the station declares its own."""

    priority: Priority
    message: Message
    on_delay_s: float = 0.0


CONTROLLER_SIGNAL_DEFAULTS: dict[Signal, SignalDefault] = {
    Signal.OUTDOOR_SENSOR_FAULT: SignalDefault(priority=Priority.MEDIUM, on_delay_s=60,
                                               message="Outdoor sensor faulty: controller uses a fallback"),
    Signal.OUTDOOR_LAST_GOOD: SignalDefault(priority=Priority.MEDIUM, on_delay_s=60,
                                            message="Outdoor temperature: using the last good value"),
    Signal.OUTDOOR_DEFAULT: SignalDefault(priority=Priority.HIGH, on_delay_s=60,
                                          message="Outdoor temperature unknown: controller runs on its default"),
    Signal.ROOMS_NONE_VALID: SignalDefault(priority=Priority.MEDIUM, on_delay_s=1800,
                                           message="No valid room temperature: no room trim"),
    Signal.RETURN_LIMIT_ACTIVE: SignalDefault(priority=Priority.LOW, on_delay_s=6 * 3600,
                                              message="Return limiter active for over 6 h"),
    Signal.POWER_LIMIT_ACTIVE: SignalDefault(priority=Priority.LOW, on_delay_s=6 * 3600,
                                             message="Power limiter active for over 6 h"),
    Signal.FLOW_LIMIT_ACTIVE: SignalDefault(priority=Priority.LOW, on_delay_s=6 * 3600,
                                            message="Flow limiter active for over 6 h"),
    Signal.LIMITER_SENSOR_FAULT: SignalDefault(priority=Priority.LOW, on_delay_s=300,
                                               message="A limiter's sensor is faulty: limiter off"),
    Signal.FROST_PROTECTION: SignalDefault(priority=Priority.HIGH,
                                           message="Frost protection active"),
    Signal.MORNING_TARGET_MISSED: SignalDefault(priority=Priority.MEDIUM,
                                                message="Rooms missed the morning comfort target"),
    Signal.SETPOINT_NOT_WRITTEN: SignalDefault(priority=Priority.HIGH, on_delay_s=300,
                                               message="Supply setpoint not written to the PLC"),
    Signal.COMFORT_TARGET_MISSED: SignalDefault(priority=Priority.MEDIUM, on_delay_s=1800,
                                                message="A room below the comfort contract for 30 min"),
    Signal.ROOMS_LOST_RECOVERY: SignalDefault(priority=Priority.MEDIUM,
                                              message="Room sensors lost during a setback: safe boost running"),
    Signal.CIRCULATION_LOST: SignalDefault(priority=Priority.CRITICAL, on_delay_s=10,
                                           message="Circulation lost: controller holds its last safe setpoint"),
}
"""Signals worth an operator's attention. Informational ones (outdoor from dispatch, a dispatch
offset in force, one room sensor invalid) are in the control state, not alarms."""


def signal_alarm_id(signal: Signal) -> str:
    """The id of the default alarm for a controller signal (``ctl_setpoint_not_written``)."""
    return f"ctl_{signal.value}"


def _cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """A suppression cycle (a -> b -> a) if there is one: it would hide both alarms for ever."""
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> list[str]:
        if node in trail:
            return [*trail[trail.index(node):], node]
        if node in done:
            return []
        for nxt in edges.get(node, ()):
            if found := visit(nxt, [*trail, node]):
                return found
        done.add(node)
        return []

    for start in edges:
        if found := visit(start, []):
            return found
    return []


# --- station events (what the regulations count) --------------------------------------------------

class InterruptionSettings(Strict):
    """A supply interruption: no heat reaches the users. It starts when any configured cause holds
    for ``confirm_s`` (primary supply lost, circulation stopped, supply temperature collapsed) and is
    escalated at each of ``escalations_h`` after its start (regulations: report within 1 h, notify
    users at 8 h, fees reduced from 24 h); it ends after ``confirm_s`` without a cause."""

    primary_lost_tag: TagName | None = None
    pump_fault_tag: TagName | None = None
    pump_running_tag: TagName | None = None
    supply_temp_tag: TagName | None = None
    supply_collapsed_below_c: float = Field(default=35.0, ge=0, le=100)
    confirm_s: float = Field(default=60.0, ge=0, le=3600)
    escalations_h: tuple[float, ...] = Field(default=(1.0, 8.0, 24.0), min_length=1)


class MakeupSettings(Strict):
    """Make-up water loss: the make-up volume over ``period_h`` against the system volume (the
    site's definition); above ``limit_pct`` it is an event, escalated when not handled within
    ``handle_within_h`` (the domain brief: 1 % and 6 h)."""

    total_tag: TagName
    system_volume_m3: float = Field(gt=0, le=1_000_000)
    period_h: float = Field(default=24.0, gt=0, le=24 * 31)
    limit_pct: float = Field(default=1.0, gt=0, le=100)
    handle_within_h: float = Field(default=6.0, gt=0, le=24 * 31)


class RoomSettings(Strict):
    """Representative rooms (测温点): below ``repair_below_c`` a fault must be fixed within
    ``repair_within_h`` (any hour); below the comfort target during the comfort hours (station time
    zone) is a comfort event. Each carries the refund tier of the coldest reading so far, by the
    station's refund rule (``report.refund_tiers``, the one ``heatgw report`` bills with).
    ``confirm_s`` keeps one low radio report from starting an event.

    The comfort contract has one source: unless given here, the rooms are the controller's
    representative rooms and each room's target and hours are its circuit's ``comfort``
    (``day_c``, ``day_start``, ``day_end``); without a controller, 18 °C from 06:00 to 21:00."""

    tags: tuple[TagName, ...] = Field(default=(), description="default: the controller's rooms")
    repair_below_c: float = Field(default=16.0, ge=0, le=30)
    repair_within_h: float = Field(default=2.0, gt=0, le=240)
    comfort_below_c: float | None = Field(default=None, ge=0, le=30, description="default: the circuit's day_c")
    comfort_from: dt.time | None = Field(default=None, description="default: the circuit's day_start")
    comfort_to: dt.time | None = Field(default=None, description="default: the circuit's day_end")
    confirm_s: float = Field(default=600.0, ge=0, le=86_400)


class EventSettings(Strict):
    """The station's ``events:`` section; each rule is off until configured. ``trips`` maps an event
    id to a bool tag (interlock trips, pit flooding) whose true state is an event."""

    interruption: InterruptionSettings | None = None
    makeup: MakeupSettings | None = None
    rooms: RoomSettings | None = None
    trips: dict[AlarmId, TagName] = Field(default_factory=dict)

    def tag_refs(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every tag this section names, with the path of the field naming it."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.interruption is not None:
            for name in ("primary_lost_tag", "pump_fault_tag", "pump_running_tag", "supply_temp_tag"):
                if (tag := getattr(self.interruption, name)) is not None:
                    found.append((("events", "interruption", name), tag))
        if self.makeup is not None:
            found.append((("events", "makeup", "total_tag"), self.makeup.total_tag))
        if self.rooms is not None:
            found.extend((("events", "rooms", "tags", index), tag) for index, tag in enumerate(self.rooms.tags))
        found.extend((("events", "trips", event), tag) for event, tag in self.trips.items())
        return found

    def problems(self, tag_devices: Mapping[str, str]) -> list[tuple[tuple[str | int, ...], str]]:
        found = [(path, f"unknown tag {tag!r}") for path, tag in self.tag_refs() if tag not in tag_devices]
        found.extend((("events", "trips", event), f"the id {event!r} is reserved")
                     for event in self.trips if event in RESERVED_EVENT_IDS)
        return found


RESERVED_EVENT_IDS = frozenset({"open", "interruption", "makeup_loss"})
"""``open`` is the retained summary topic; the others are the rules' own event ids."""
