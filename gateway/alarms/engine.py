"""The alarm engine: bus items in, alarm transitions out. Pure: no loop, no disk, an injected time.

Cost is what matters at a big station (10,000 tags, 2,000 alarms, every tag every second): alarms
are indexed by tag at start, so a sample of a tag nobody watches costs one dictionary miss, and
only the alarms of the tags in a batch are evaluated. Timers (on/off delays, shelving, stale
values) are kept in small sets and looked at by ``tick``, never by scanning every alarm.

One fault gives one alarm: an alarm's ``suppressed_by`` alarms, and the communication alarm of
the device its tags live on, suppress it while their condition holds. Within one evaluation the
suppressors settle first (alarms are processed by suppression depth), so a pump trip and the low
flow it causes in the same batch raise the trip only.

Flood: beyond ``flood.max_activations`` activations in ``flood.window_s``, the activations below
``flood.annunciate`` priority are marked not annunciated and counted in the ``alarm_flood``
summary alarm. They are still transitions: stored, published on the events topic, kept in the
retained state. Summarising changes what is shouted, never what is recorded.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from drivers.base import Quality
from gateway.alarms.settings import (
    CONTROLLER_SIGNAL_DEFAULTS,
    FLOOD_ALARM_ID,
    AlarmConfig,
    AlarmSettings,
    CommAlarm,
    DeviationAlarm,
    DiscreteAlarm,
    LimitAlarm,
    Priority,
    QualityAlarm,
    RateAlarm,
    SignalAlarm,
    signal_alarm_id,
)
from gateway.alarms.state import (
    OPEN_STATES,
    AlarmRecord,
    AlarmRefused,
    AlarmState,
    acknowledge,
    set_out_of_service,
    shelve,
    step,
    unshelve,
)
from gateway.control.model import ControllerState
from gateway.samples import DeviceStatus, Sample, SampleBatch, Value

FLOOD_MESSAGE = "Alarm flood: lower-priority alarms are summarised here, see the events history"


@dataclass(frozen=True, slots=True)
class Transition:
    """An alarm changed state: what it was, what it is, and whether to shout about it."""

    record: AlarmRecord
    previous: AlarmState
    priority: Priority
    message: str
    limit: float | None
    annunciate: bool = True


@dataclass(eq=False)
class Watch:
    """One alarm at run time: its declaration, its record, and its detector's memory."""

    id: str
    config: AlarmConfig | None  # None for the flood summary
    priority: Priority
    message: str
    suppressors: tuple[str, ...] = ()
    dependents: list[Watch] = field(default_factory=list)
    depth: int = 0
    record: AlarmRecord = field(default_factory=lambda: AlarmRecord(""))
    raw: bool | None = None  # the undebounced condition
    since: float | None = None  # when ``raw`` started to differ from the debounced condition
    value: Value = None
    last_time: float | None = None  # rate: previous good sample; quality: last good sample
    last_value: float | None = None

    @property
    def limit(self) -> float | None:
        config = self.config
        if isinstance(config, LimitAlarm | DeviationAlarm):
            return config.limit
        if isinstance(config, RateAlarm):
            return config.limit_per_min
        return None

    @property
    def delays(self) -> tuple[float, float]:
        config = self.config
        if config is None:
            return 0.0, 0.0
        on = config.on_delay_s + (config.after_s if isinstance(config, QualityAlarm) else 0.0)
        return on, config.off_delay_s


def compile_alarms(settings: AlarmSettings, controller: bool) -> dict[str, AlarmConfig]:
    """The station's declared alarms plus the controller signals' defaults (when a controller
    runs and the station did not declare its own alarm for that signal)."""
    alarms: dict[str, AlarmConfig] = dict(settings.definitions)
    if controller and settings.controller_signals:
        declared = {a.signal for a in alarms.values() if isinstance(a, SignalAlarm)}
        for signal, default in CONTROLLER_SIGNAL_DEFAULTS.items():
            if signal not in declared:
                alarms[signal_alarm_id(signal)] = SignalAlarm(kind="controller", signal=signal, **default.model_dump())
    return alarms


class AlarmEngine:
    """Evaluates alarms on bus items; ``tick`` runs the timers. Returns transitions, keeps nothing
    else: storing, publishing and logging them is the caller's job (``gateway.alarms.service``)."""

    def __init__(self, settings: AlarmSettings, tag_devices: Mapping[str, str], *, controller: bool = False,
                 now: float = 0.0) -> None:
        self.settings = settings
        self._watches: dict[str, Watch] = {}
        self._by_tag: dict[str, list[Watch]] = {}
        self._by_device: dict[str, list[Watch]] = {}
        self._by_signal: list[tuple[Watch, object]] = []
        self._values: dict[str, Sample] = {}  # latest sample of every tag a deviation alarm compares
        self._pending: set[Watch] = set()  # debounce timers running
        self._quality: list[Watch] = []
        self._shelved: set[Watch] = set()
        self._activations: deque[float] = deque()
        self.summarised = 0  # activations not annunciated during floods, since start
        alarms = compile_alarms(settings, controller)
        comm_of_device = {a.device: alarm_id for alarm_id, a in alarms.items() if isinstance(a, CommAlarm)}
        for alarm_id, config in alarms.items():
            suppressors = list(config.suppressed_by)
            for name in ("tag", "reference"):
                tag = getattr(config, name, None)
                comm = comm_of_device.get(tag_devices.get(tag, "")) if tag is not None else None
                if comm is not None and comm not in suppressors:
                    suppressors.append(comm)
            watch = Watch(alarm_id, config, config.priority, config.message, tuple(suppressors),
                          record=AlarmRecord(alarm_id, changed=now))
            self._watches[alarm_id] = watch
            if isinstance(config, CommAlarm):
                self._by_device.setdefault(config.device, []).append(watch)
            elif isinstance(config, SignalAlarm):
                self._by_signal.append((watch, config.signal))
            else:
                self._by_tag.setdefault(config.tag, []).append(watch)
                if isinstance(config, DeviationAlarm):
                    self._by_tag.setdefault(config.reference, []).append(watch)
                if isinstance(config, QualityAlarm):
                    self._quality.append(watch)
                    watch.last_time = now  # a tag never heard of is stale ``after_s`` after start
        for watch in self._watches.values():
            for other in watch.suppressors:
                self._watches[other].dependents.append(watch)
        for watch in self._watches.values():
            watch.depth = self._depth(watch)
            watch.record = set_out_of_service(watch.record, _out_of_service(watch), now)
        self._flood = Watch(FLOOD_ALARM_ID, None, Priority.HIGH, FLOOD_MESSAGE, record=AlarmRecord(FLOOD_ALARM_ID, changed=now))
        self._watches[FLOOD_ALARM_ID] = self._flood

    def _depth(self, watch: Watch) -> int:
        return 0 if not watch.suppressors else 1 + max(self._depth(self._watches[s]) for s in watch.suppressors)

    # --- what is known -------------------------------------------------------------------------

    @property
    def records(self) -> list[AlarmRecord]:
        return [watch.record for watch in self._watches.values()]

    def record(self, alarm_id: str) -> AlarmRecord:
        return self._watch(alarm_id).record

    def open_alarms(self) -> list[Transition]:
        """The alarm list an operator works from: active, acknowledged and returned alarms, most
        urgent first, then oldest first."""
        open_ = [self._transition(w, w.record.state) for w in self._watches.values() if w.record.state in OPEN_STATES]
        return sorted(open_, key=lambda t: (t.priority.rank, t.record.activated or 0.0))

    def describe(self, alarm_id: str) -> Transition:
        """The alarm's current state as a transition from itself (the retained state payload)."""
        watch = self._watch(alarm_id)
        return self._transition(watch, watch.record.state)

    def restore(self, records: Iterable[AlarmRecord], now: float) -> list[Transition]:
        """Take the states stored before a restart. Alarms no longer configured are ignored; the
        configuration's ``out_of_service`` wins over the stored state. The condition is believed
        until the first sample says otherwise, so an acknowledged alarm is not raised again and
        one that cleared during the outage returns (unacknowledged ones show as returned)."""
        changed = []
        for stored in records:
            watch = self._watches.get(stored.id)
            if watch is None or watch is self._flood or stored.state is AlarmState.REMOVED:
                continue  # (an alarm declared again after its removal starts anew)
            watch.record = stored
            if stored.state is AlarmState.SHELVED:
                self._shelved.add(watch)
            wanted = set_out_of_service(stored, _out_of_service(watch), now)
            if wanted is not stored:
                changed.append(self._apply(watch, wanted, annunciate=True))
        return changed

    # --- inputs ----------------------------------------------------------------------------------

    def on_item(self, item: object, now: float) -> list[Transition]:
        """Evaluate the alarms an item concerns (a sample batch, a device status, a controller state)."""
        changed: set[Watch] = set()
        if isinstance(item, SampleBatch):
            by_tag, values = self._by_tag, self._values
            for sample in item.samples:
                watches = by_tag.get(sample.tag)
                if watches is None:
                    continue
                values[sample.tag] = sample
                for watch in watches:
                    self._raw(watch, self._detect(watch, sample, now), sample.value, now, changed)
        elif isinstance(item, DeviceStatus):
            for watch in self._by_device.get(item.device, ()):
                self._raw(watch, not item.online, None, now, changed)  # the reason is in the poller's log
        elif isinstance(item, ControllerState):
            signals = set(item.signals)
            for watch, signal in self._by_signal:
                self._raw(watch, signal in signals, None, now, changed)
        return self._settle(changed, now)

    def tick(self, now: float) -> list[Transition]:
        """Timers: debounce delays that ran out, shelving that ended, tags that went silent."""
        changed: set[Watch] = set()
        for watch in self._quality:
            if watch.raw is not True and watch.last_time is not None:
                assert isinstance(watch.config, QualityAlarm)
                if now - watch.last_time > watch.config.after_s:
                    # The silence began when the last good sample came: count the delay from there.
                    self._raw(watch, True, None, watch.last_time, changed)
        for watch in list(self._pending):
            self._debounce(watch, now, changed)
        transitions = self._settle(changed, now)
        for watch in [w for w in self._shelved if (w.record.shelved_until or math.inf) <= now]:
            self._shelved.discard(watch)
            transitions.append(self._apply(watch, unshelve(watch.record, self._suppressed(watch), now), True))
        transitions.extend(self._flood_check(now, activations=0))
        return transitions

    # --- operator actions -------------------------------------------------------------------------

    def acknowledge(self, alarm_id: str, now: float, origin: str) -> Transition:
        """Raises ``AlarmRefused`` (unknown id, not active, already acknowledged, ...)."""
        watch = self._watch(alarm_id)
        return self._apply(watch, acknowledge(watch.record, now, origin), annunciate=True)

    def shelve(self, alarm_id: str, now: float, duration_s: float, origin: str, reason: str) -> Transition:
        """Shelve for ``duration_s`` (at most ``max_shelve_s``); it ends by itself."""
        watch = self._watch(alarm_id)
        if watch is self._flood:
            raise AlarmRefused("the flood summary cannot be shelved")
        if not 0 < duration_s <= self.settings.max_shelve_s:
            raise AlarmRefused(f"duration_s must be above 0 and at most {self.settings.max_shelve_s:g} "
                               "(alarms.max_shelve_s)")
        transition = self._apply(watch, shelve(watch.record, now, now + duration_s, origin, reason), True)
        self._shelved.add(watch)
        return transition

    def _watch(self, alarm_id: str) -> Watch:
        watch = self._watches.get(alarm_id)
        if watch is None:
            raise AlarmRefused(f"unknown alarm {alarm_id!r}")
        return watch

    # --- evaluation -------------------------------------------------------------------------------

    def _detect(self, watch: Watch, sample: Sample, now: float) -> bool | None:
        """The raw condition from one sample; None when the sample cannot tell (a bad value).
        Silence is timed on the engine's clock (``now``), rates on the samples' own times."""
        config = watch.config
        good = sample.quality is Quality.GOOD and sample.value is not None
        if isinstance(config, QualityAlarm):
            if good:
                watch.last_time = now
                return False
            return None if watch.raw else True
        if not good:
            return None
        value = sample.value
        if isinstance(config, DiscreteAlarm):
            return bool(value) is config.abnormal
        number = float(value)  # type: ignore[arg-type]
        if isinstance(config, LimitAlarm):
            margin = config.deadband if watch.raw else 0.0
            return number > config.limit - margin if config.high else number < config.limit + margin
        if isinstance(config, DeviationAlarm):
            tag, reference = self._values.get(config.tag), self._values.get(config.reference)
            if tag is None or reference is None or tag.quality is not Quality.GOOD \
                    or reference.quality is not Quality.GOOD or tag.value is None or reference.value is None:
                return None
            margin = config.deadband if watch.raw else 0.0
            return abs(float(tag.value) - float(reference.value)) > config.limit - margin
        if isinstance(config, RateAlarm):
            previous_time, previous = watch.last_time, watch.last_value
            watch.last_time, watch.last_value = sample.timestamp, number
            if previous_time is None or previous is None or sample.timestamp <= previous_time:
                return None
            rate = abs(number - previous) / (sample.timestamp - previous_time) * 60.0
            margin = config.deadband if watch.raw else 0.0
            return rate > config.limit_per_min - margin
        return None

    def _raw(self, watch: Watch, raw: bool | None, value: Value, now: float, changed: set[Watch]) -> None:
        if raw is None:
            return
        watch.value = value
        if raw != watch.raw:
            watch.raw = raw
            watch.since = now if raw != watch.record.condition else None
            if watch.since is None:
                self._pending.discard(watch)
            else:
                self._pending.add(watch)
        self._debounce(watch, now, changed)

    def _debounce(self, watch: Watch, now: float, changed: set[Watch]) -> None:
        if watch.since is None or watch.raw is None:
            return
        on_delay, off_delay = watch.delays
        if now - watch.since >= (on_delay if watch.raw else off_delay):
            watch.since = None
            self._pending.discard(watch)
            watch.record = dataclasses.replace(watch.record, condition=watch.raw)
            changed.add(watch)

    def _suppressed(self, watch: Watch) -> bool:
        watches = self._watches
        return any(watches[s].record.condition for s in watch.suppressors)

    def _settle(self, changed: set[Watch], now: float) -> list[Transition]:
        """Step the alarms whose condition changed, and the alarms they suppress, suppressors first."""
        if not changed:
            return []
        todo = set(changed)
        for watch in changed:
            todo.update(watch.dependents)
        transitions = []
        activations = 0
        for watch in sorted(todo, key=lambda w: w.depth):
            record = watch.record
            new = step(record, record.condition, self._suppressed(watch), now, watch.value)
            if new.state is not record.state:
                activations += new.state is AlarmState.ACTIVE
                transitions.append(self._apply(watch, new, annunciate=True))
            else:
                watch.record = new
        if activations:
            transitions = self._summarise(transitions, now, activations)
        return transitions

    def _apply(self, watch: Watch, new: AlarmRecord, annunciate: bool) -> Transition:
        previous = watch.record.state
        watch.record = new
        return self._transition(watch, previous, annunciate)

    def _transition(self, watch: Watch, previous: AlarmState, annunciate: bool = True) -> Transition:
        message = watch.message
        if watch is self._flood:
            flood = self.settings.flood
            message = (f"{FLOOD_MESSAGE} ({len(self._activations)} activations in {flood.window_s:g} s, "
                       f"{self.summarised} summarised since start)")
        return Transition(watch.record, previous, watch.priority, message, watch.limit, annunciate)

    # --- flood ----------------------------------------------------------------------------------

    def _summarise(self, transitions: list[Transition], now: float, activations: int) -> list[Transition]:
        flood = self.settings.flood
        out = []
        for transition in transitions:
            if transition.record.state is AlarmState.ACTIVE:
                self._activations.append(now)
            flooding = len(self._activations) > flood.max_activations
            if flooding and transition.priority.rank > flood.annunciate.rank:
                self.summarised += 1
                transition = dataclasses.replace(transition, annunciate=False)
            out.append(transition)
        out.extend(self._flood_check(now, activations))
        return out

    def _flood_check(self, now: float, activations: int) -> list[Transition]:
        """Start, update or end the ``alarm_flood`` summary."""
        flood = self.settings.flood
        window = self._activations
        while window and window[0] <= now - flood.window_s:
            window.popleft()
        record = self._flood.record
        count = len(window)
        flooding = record.state in (AlarmState.ACTIVE, AlarmState.ACKNOWLEDGED)  # it may be acknowledged
        if count > flood.max_activations and not flooding:
            return [self._apply(self._flood, dataclasses.replace(
                record, state=AlarmState.ACTIVE, condition=True, changed=now, activated=now, returned=None,
                value=count), annunciate=True)]
        if count <= flood.max_activations and flooding:
            return [self._apply(self._flood, dataclasses.replace(
                record, state=AlarmState.NORMAL, condition=False, changed=now, returned=now, value=count),
                annunciate=True)]
        if activations and flooding:
            record = dataclasses.replace(record, value=count)
            self._flood.record = record
        return []


def _out_of_service(watch: Watch) -> bool:
    return watch.config is not None and watch.config.out_of_service
