"""Station events: what the heating regulations count, with a start, escalations and an end.

An alarm asks an operator to act now; an event is a fact with a duration that the company
answers for: a supply interruption (reported within 1 h, users notified at 8 h, fees reduced from
24 h), make-up water lost beyond 1 % of the system (penalised when not handled within 6 h), a room
below 16 °C (to be fixed within 2 h) or below 18 °C in the day (a comfort failure), each with the
refund tier it costs, an interlock trip, a flooded pit. Every number comes from the station's
``events:`` section (defaults from the domain brief), none is a constant here.

Pure, like the alarm engine: bus items and an injected time in, ``StationEvent`` updates out. Each
event goes through ``started`` -> ``escalated`` (zero or more times, each with the next deadline)
-> ``ended`` (with the end time and the total duration). A rule's condition must hold for its
``confirm_s`` to start an event, and be gone as long to end it; the start and end times are when
the condition began and went, not when it was confirmed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar
from zoneinfo import ZoneInfo

from drivers.base import Quality
from gateway.alarms.settings import EventSettings, InterruptionSettings, MakeupSettings, RoomSettings
from gateway.control.model import ControllerState
from gateway.control.settings import ControllerSettings
from gateway.report.settings import ZIBO_TIERS, RefundTierSetting
from gateway.samples import Sample, SampleBatch, Value


T = TypeVar("T")

INTERRUPTION = "interruption"
"""The supply interruption rule's name (and its event's id): what dispatch's season report lists."""


class EventState(str, Enum):
    STARTED = "started"
    ESCALATED = "escalated"
    ENDED = "ended"
    REMOVED = "removed"
    """The last update of an open event whose rule the station file no longer declares (a reload,
    or a start that finds it gone): the gateway stops watching it, so it has no ``ended``."""


@dataclass(frozen=True, slots=True)
class StationEvent:
    """One station event as published (``events`` topic, ``kind: event``) and stored."""

    id: str
    rule: str  # interruption, makeup_loss, room_repair, room_comfort, trip
    state: EventState
    started: float
    changed: float
    message: str
    cause: str = ""
    escalation_h: float = 0.0  # the last escalation reached (0: none yet)
    deadline: float | None = None  # when the next escalation falls due
    ended: float | None = None
    value: float | None = None  # the figure behind the event: % lost, the coldest room reading
    refund_pct: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.ended if self.ended is not None else self.changed) - self.started

    def removed(self, now: float, why: str) -> StationEvent:
        """This open event's last update when its rule is gone from the station file."""
        return dataclasses.replace(self, state=EventState.REMOVED, changed=now, cause=why, deadline=None)


@dataclass(eq=False)
class _Tracker:
    """Debounces one rule's condition into an event and escalates it on time."""

    id: str
    rule: str
    message: str
    confirm_s: float
    escalations_h: tuple[float, ...] = ()
    since: float | None = None  # condition true since (no event yet)
    clear_since: float | None = None  # condition gone since (event still open)
    event: StationEvent | None = None
    cause: str = ""
    value: float | None = None
    refund_pct: float | None = None

    def update(self, active: bool | None, now: float, cause: str = "", value: float | None = None,
               refund_pct: float | None = None) -> list[StationEvent]:
        if active is None:
            return []
        if active:
            self.clear_since = None
            self.cause, self.value = cause, value
            self.refund_pct = refund_pct if self.refund_pct is None or refund_pct is None else max(
                self.refund_pct, refund_pct)
            if self.event is None and self.since is None:
                self.since = now
        else:
            self.since = None
            if self.event is None:
                self.refund_pct = None  # a dip too short to start an event costs nothing
            elif self.clear_since is None:
                self.clear_since = now
        return self.tick(now)

    def tick(self, now: float) -> list[StationEvent]:
        out = []
        if self.event is None and self.since is not None and now - self.since >= self.confirm_s:
            started = self.since
            self.since = None
            self.event = StationEvent(self.id, self.rule, EventState.STARTED, started, now, self.message,
                                      self.cause, 0.0, self._deadline(started, 0.0), None, self.value, self.refund_pct)
            out.append(self.event)
        event = self.event
        if event is not None and self.clear_since is not None and now - self.clear_since >= self.confirm_s:
            out.append(dataclasses.replace(event, state=EventState.ENDED, changed=now, ended=self.clear_since,
                                           deadline=None, value=self.value, refund_pct=self.refund_pct))
            self.event, self.clear_since, self.refund_pct = None, None, None
            return out
        while event is not None and event.deadline is not None and now >= event.deadline:
            reached = (event.deadline - event.started) / 3600.0
            event = dataclasses.replace(event, state=EventState.ESCALATED, changed=now, escalation_h=reached,
                                        deadline=self._deadline(event.started, reached), cause=self.cause,
                                        value=self.value, refund_pct=self.refund_pct)
            out.append(event)
        self.event = event
        return out

    def _deadline(self, started: float, reached_h: float) -> float | None:
        later = [h for h in self.escalations_h if h > reached_h + 1e-9]
        return started + min(later) * 3600.0 if later else None


@dataclass(frozen=True, slots=True)
class RoomRule:
    """One representative room and its comfort contract."""

    tag: str
    comfort_below_c: float
    comfort_from: dt.time
    comfort_to: dt.time


def room_rules(settings: RoomSettings, controller: ControllerSettings | None) -> list[RoomRule]:
    """The rooms watched and each one's comfort contract: the ``events.rooms`` values where given,
    else those of the controller circuit the room belongs to, else 18 °C from 06:00 to 21:00."""
    comfort_of = {sensor.temp_tag: circuit.comfort for circuit in (controller.circuits.values() if controller else ())
                  for sensor in circuit.rooms.values()}
    tags = settings.tags or tuple(comfort_of)
    rules = []
    for tag in tags:
        comfort = comfort_of.get(tag)
        rules.append(RoomRule(
            tag,
            _first(settings.comfort_below_c, comfort.day_c if comfort else None, 18.0),
            _first(settings.comfort_from, comfort.day_start if comfort else None, dt.time(6, 0)),
            _first(settings.comfort_to, comfort.day_end if comfort else None, dt.time(21, 0))))
    return rules


def _first(*values: T | None) -> T:
    return next(value for value in values if value is not None)  # type: ignore[misc]


class EventEngine:
    """Evaluates the station's event rules on bus items and on ``tick``."""

    def __init__(self, settings: EventSettings, timezone: str,
                 refund_tiers: Sequence[RefundTierSetting] = ZIBO_TIERS,
                 controller: ControllerSettings | None = None) -> None:
        self.settings = settings
        self._tiers = tuple(refund_tiers)
        self.rooms = [] if settings.rooms is None else room_rules(settings.rooms, controller)
        self._zone = ZoneInfo(timezone)
        self._values: dict[str, Value] = {}
        self._watched = {tag for _, tag in settings.tag_refs()} | {room.tag for room in self.rooms}
        self._trackers: dict[str, _Tracker] = {}
        self._makeup: deque[tuple[float, float]] = deque()
        # Heat is owed unless the controller says no circuit heats (summer, cut-out on a warm day,
        # cold circulation): a cold supply or a stopped pump then interrupts nothing.
        self._heat_owed = True
        if (interruption := settings.interruption) is not None:
            self._add(INTERRUPTION, INTERRUPTION, "供热中断 Supply interruption", interruption.confirm_s,
                      interruption.escalations_h)
        if (makeup := settings.makeup) is not None:
            self._add("makeup_loss", "makeup_loss",
                      f"补水量超标 Make-up water above {makeup.limit_pct:g} % of the system in {makeup.period_h:g} h",
                      0.0, (makeup.handle_within_h,))
        if (rooms := settings.rooms) is not None:
            for room in self.rooms:
                self._add(f"room_repair_{room.tag}", "room_repair",
                          f"室温低于 {rooms.repair_below_c:g} °C Room below {rooms.repair_below_c:g} °C: "
                          f"fix within {rooms.repair_within_h:g} h", rooms.confirm_s, (rooms.repair_within_h,))
                self._add(f"room_comfort_{room.tag}", "room_comfort",
                          f"室温低于 {room.comfort_below_c:g} °C Room below {room.comfort_below_c:g} °C during "
                          f"{room.comfort_from:%H:%M}-{room.comfort_to:%H:%M}", rooms.confirm_s, ())
        for event_id, tag in settings.trips.items():
            self._add(event_id, "trip", f"{tag} tripped", 0.0, ())

    def _add(self, event_id: str, rule: str, message: str, confirm_s: float, escalations_h: tuple[float, ...]) -> None:
        self._trackers[event_id] = _Tracker(event_id, rule, message, confirm_s, tuple(sorted(escalations_h)))

    @property
    def open_events(self) -> list[StationEvent]:
        return [t.event for t in self._trackers.values() if t.event is not None]

    def restore(self, events: Iterable[StationEvent]) -> None:
        """Open events stored before a restart stay open (and escalate on time) until their rule ends them."""
        for event in events:
            tracker = self._trackers.get(event.id)
            if tracker is not None and event.state is not EventState.ENDED:
                tracker.event, tracker.refund_pct, tracker.value = event, event.refund_pct, event.value

    def on_item(self, item: object, now: float) -> list[StationEvent]:
        if isinstance(item, ControllerState):
            owed = any(circuit.heating for circuit in item.circuits)
            if owed == self._heat_owed:
                return []
            self._heat_owed = owed
            return [] if self.settings.interruption is None else self._interruption(self.settings.interruption, now)
        if not isinstance(item, SampleBatch):
            return []
        seen = [s for s in item.samples if s.tag in self._watched]
        if not seen:
            return []
        for sample in seen:
            self._values[sample.tag] = _good(sample)
        return self._evaluate(now, {s.tag for s in seen})

    def tick(self, now: float) -> list[StationEvent]:
        out = []
        for tracker in self._trackers.values():
            out.extend(tracker.tick(now))
        if self.rooms:
            out.extend(self._rooms(now, {room.tag for room in self.rooms}))  # comfort hours begin and end
        return out

    def _evaluate(self, now: float, tags: set[str]) -> list[StationEvent]:
        out: list[StationEvent] = []
        settings = self.settings
        if settings.interruption is not None:
            out.extend(self._interruption(settings.interruption, now))
        if settings.makeup is not None and settings.makeup.total_tag in tags:
            out.extend(self._makeup_loss(settings.makeup, now))
        if self.rooms:
            out.extend(self._rooms(now, tags))
        for event_id, tag in settings.trips.items():
            if tag in tags:
                value = self._values.get(tag)
                out.extend(self._trackers[event_id].update(None if value is None else bool(value), now, tag))
        return out

    def _interruption(self, rule: InterruptionSettings, now: float) -> list[StationEvent]:
        causes, known = interruption_causes(rule, self._values)
        if not self._heat_owed:
            causes = []
        return self._trackers[INTERRUPTION].update(bool(causes) if known else None, now, ", ".join(causes))

    def _makeup_loss(self, rule: MakeupSettings, now: float) -> list[StationEvent]:
        total = self._values.get(rule.total_tag)
        if not isinstance(total, int | float) or isinstance(total, bool):
            return []
        history = self._makeup
        if history and total < history[-1][1]:
            history.clear()  # the meter's counter was reset or replaced
        history.append((now, float(total)))
        while len(history) > 1 and history[1][0] <= now - rule.period_h * 3600:
            history.popleft()
        lost_pct = makeup_loss_pct(history[0][1], float(total), rule.system_volume_m3)
        return self._trackers["makeup_loss"].update(lost_pct > rule.limit_pct, now,
                                                    f"{lost_pct:.2f} % of {rule.system_volume_m3:g} m3",
                                                    round(lost_pct, 3))

    def _rooms(self, now: float, tags: set[str]) -> list[StationEvent]:
        rule = self.settings.rooms
        assert rule is not None
        out = []
        local = dt.datetime.fromtimestamp(now, self._zone).time()
        for room in self.rooms:
            if room.tag not in tags:
                continue
            value = self._values.get(room.tag)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            refund = refund_pct(value, self._tiers)
            cause = f"{room.tag} {value:.1f} C"
            day = room.comfort_from <= local < room.comfort_to
            out.extend(self._trackers[f"room_repair_{room.tag}"].update(value < rule.repair_below_c, now, cause,
                                                                        float(value), refund))
            out.extend(self._trackers[f"room_comfort_{room.tag}"].update(day and value < room.comfort_below_c, now,
                                                                         cause, float(value), refund))
        return out


def _good(sample: Sample) -> Value:
    return sample.value if sample.quality is Quality.GOOD else None


def interruption_causes(rule: InterruptionSettings, values: dict[str, Value]) -> tuple[list[str], bool]:
    """Why no heat reaches the users (empty when it does), and whether any of the tags is known."""
    causes: list[str] = []
    known = False
    checks = ((rule.primary_lost_tag, lambda v: bool(v), "primary supply lost"),
              (rule.pump_fault_tag, lambda v: bool(v), "circulation pump fault"),
              (rule.pump_running_tag, lambda v: not v, "circulation pump stopped"))
    for tag, bad, cause in checks:
        if tag is not None and (value := values.get(tag)) is not None:
            known = True
            if bad(value):
                causes.append(cause)
    if rule.supply_temp_tag is not None and isinstance(supply := values.get(rule.supply_temp_tag), int | float):
        known = True
        if supply < rule.supply_collapsed_below_c:
            causes.append(f"supply {supply:.1f} C below {rule.supply_collapsed_below_c:g}")
    return causes, known


def makeup_loss_pct(total_then_m3: float, total_now_m3: float, system_volume_m3: float) -> float:
    """Make-up water added since ``total_then_m3``, as a percentage of the system volume."""
    return max(0.0, total_now_m3 - total_then_m3) / system_volume_m3 * 100.0


def refund_pct(room_c: float, tiers: Sequence[RefundTierSetting]) -> float | None:
    """The refund a room temperature costs (the highest tier whose bound it is below), or None."""
    refunds = [tier.refund_pct for tier in tiers if room_c < tier.below_c]
    return max(refunds) if refunds else None
