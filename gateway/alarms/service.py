"""The alarm and event engines at work in the gateway: a bus consumer, a timer, a store, the way out.

* **Bus**: subscribed lossless. An alarm missed because the engine fell behind is worse than a
  late poll, and evaluating costs microseconds per batch (bench/alarms.py); the slow part (disk,
  network) runs in a separate writer task behind an in-memory queue, so a slow disk delays the
  transitions' storage, never polling.
* **Timers**: ``tick`` every ``tick_s``, for delays, shelving and silent tags.
* **Way out**, per group of transitions: the store (synced; see ``store.py`` for why first), the
  outbox (topic ``events``, one message per alarm transition or event update, the
  station's ``seq``), and the retained states (``alarms/<id>``, and ``events/open`` for the station
  events not yet ended), published now and on every reconnection. The retained states go first,
  so a transition seen on ``events`` is never older news than the retained state.
* **Removal**: an alarm the station file no longer declares (a reload took it out, or it went while
  the gateway was stopped: the store still holds its row) ends with a ``removed`` transition,
  stored and appended to the outbox like any other, so the historian has its end; only then is
  its retained ``alarms/<id>`` cleared (an empty retained message, MQTT's way to delete one), so
  a dashboard stops showing an alarm that no longer exists. The stored ``removed`` row makes
  every start clear that topic again: a crash between the outbox and the clear leaves no stray.
  An open station event whose rule is gone ends the same way (a ``removed`` update), and leaves
  the retained ``events/open`` summary.
* **Log**: every transition that is annunciated, one line each; during a flood the summarised
  ones go to debug, and the ``alarm_flood`` line says how many there were.
* **Commands**: ``alarm_ack`` and ``alarm_shelve``, answered with the engine's reason when refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from gateway.alarms.engine import AlarmEngine, Transition
from gateway.alarms.events import EventEngine, StationEvent
from gateway.alarms.settings import Priority
from gateway.alarms.state import AlarmRecord, AlarmRefused, AlarmState
from gateway.alarms.store import AlarmStore
from gateway.bus import Bus
from gateway.logs import kv
from gateway.mqtt.commands import AlarmAckArgs, AlarmShelveArgs, Command, CommandRegistry, Refused
from gateway.mqtt.outbox import AsyncOutbox
from gateway.mqtt.payloads import (
    EVENTS_TOPIC,
    OPEN_EVENTS_TOPIC,
    alarm_state,
    alarm_suffix,
    alarm_transition,
    event_transition,
    open_events,
)
from gateway.mqtt.publisher import Publisher
from gateway.samples import REMOVED, Value
from gateway.yaml_source import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

BUS_QUEUE = 4096
TICK_S = 1.0
STOP_TIMEOUT_S = 10.0
MIN_TICK_S = 0.05


def alarm_tick_s(time_scale: float) -> float:
    """The timers' period: a second of the clock alarms are timed on (on accelerated time, a
    twentieth of a wall second at most, so a 1 h escalation is at most a few simulated minutes late)."""
    return max(MIN_TICK_S, TICK_S / time_scale)
class AlarmService:
    """Runs an ``AlarmEngine`` (and an ``EventEngine``) on the bus. ``async with`` for the store's
    lifetime, ``run()`` as a task. ``clock`` is the time alarms and events are timed on: the wall
    clock on a station, the simulator's in the demo and the accelerated tests."""

    def __init__(self, engine: AlarmEngine, bus: Bus, *, events: EventEngine | None = None,
                 store_path: Path | None = None,
                 outbox: AsyncOutbox | None = None, publisher: Publisher | None = None,
                 clock: Callable[[], float] = time.time, tick_s: float = TICK_S) -> None:
        self.engine = engine
        self.events = events
        self._bus = bus
        self._subscription = bus.subscribe("alarms", maxsize=BUS_QUEUE, lossless=True)
        self._store_path = store_path
        self._store: AlarmStore | None = None
        self._outbox = outbox
        self._publisher = publisher
        self._clock = clock
        self._tick_s = tick_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-store")
        self._out: asyncio.Queue[list[Transition | StationEvent]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.transitions = 0  # since start, for the benchmark and tests

    async def __aenter__(self) -> AlarmService:
        if self._store_path is not None:
            try:
                self._store = await self._in_thread(AlarmStore, self._store_path)
                stored = await self._in_thread(self._store.load)
                stored_events = await self._in_thread(self._store.load_events)
            except (OSError, sqlite3.Error) as exc:
                self._executor.shutdown(wait=False)
                raise ConfigError([f"--state-dir: cannot open the alarm store {self._store_path}: {exc}"]) from None
            now = self._clock()
            changed = self.engine.restore(stored, now)
            if self.events is not None:
                self.events.restore(stored_events)
            log.info("alarm states restored", extra=kv(
                path=self._store_path, stored=len(stored), open_events=len(stored_events),
                open=sum(r.state not in (AlarmState.NORMAL, AlarmState.REMOVED) for r in stored)))
            self._emit(changed)
            await self._retire(stored, stored_events, now)
        if self._publisher is not None:
            for record in self.engine.records:
                self._publisher.publish_retained(alarm_suffix(record.id), alarm_state(self.engine.describe(record.id)))
            self._publish_open_events(self._clock())
        self._writer = asyncio.create_task(self._write_forever(), name="alarm-writer")
        return self

    async def _retire(self, stored: list[AlarmRecord], stored_events: list[StationEvent], now: float) -> None:
        """At start: end the stored alarms and open events the station file no longer declares
        (removed while the gateway was stopped), and clear again the retained states of alarms
        removed before. Every configured alarm gets a row (one declared again after its removal, a
        fresh one), so one removed while the gateway is stopped is found at the next start."""
        assert self._store is not None
        configured = {record.id for record in self.engine.records}
        known = {record.id for record in stored if record.state is not AlarmState.REMOVED}
        await self._in_thread(self._store.save, [r for r in self.engine.records if r.id not in known])
        gone = [record for record in stored if record.id not in configured]
        self._emit([removal(record, Priority.LOW, REMOVED, None, now)
                    for record in gone if record.state is not AlarmState.REMOVED])
        self._clear([record.id for record in gone if record.state is AlarmState.REMOVED])
        watched = set() if self.events is None else {event.id for event in self.events.open_events}
        self._emit([event.removed(now, REMOVED) for event in stored_events if event.id not in watched])

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Store and hand to the outbox what is queued (the outbox is still open), then close."""
        self._bus.unsubscribe(self._subscription)
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._out.join(), STOP_TIMEOUT_S)
            except TimeoutError:  # a disk that hangs must not keep the gateway from stopping
                log.error("alarm transitions still queued at stop were not stored", extra=kv(
                    groups=self._out.qsize()))
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._store is not None:
            await self._in_thread(self._store.close)
        self._executor.shutdown(wait=True)

    async def run(self) -> None:
        """Evaluate every bus item and run the timers, until cancelled."""
        loop = asyncio.get_running_loop()
        queue = self._subscription.queue
        next_tick = loop.time() + self._tick_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                    item = await queue.get()
            except TimeoutError:
                item = None
            try:
                if item is not None:
                    now = self._clock()
                    self._emit(self.engine.on_item(item, now))
                    if self.events is not None:
                        self._emit(self.events.on_item(item, now))
                if loop.time() >= next_tick:
                    next_tick = loop.time() + self._tick_s
                    now = self._clock()
                    self._emit(self.engine.tick(now))
                    if self.events is not None:
                        self._emit(self.events.tick(now))
            except Exception:  # noqa: BLE001 - a bug on one item must not stop alarms, nor (lossless) polling
                log.exception("alarm evaluation failed; item skipped", extra=kv(item=type(item).__name__))

    def take_over(self, engine: AlarmEngine, events: EventEngine | None) -> None:
        """A reload: ``engine`` replaces the running alarm engine and ``events`` the event engine
        (either may be the running one, which then carries on untouched). A new one starts from
        the states the running one holds (an active alarm stays active, acknowledged or shelved;
        an open event stays open); alarms and events the reload removed are dropped. Called on
        the loop between two items, so nothing is evaluated twice. An alarm the reload removed
        ends with a ``removed`` transition (see the module's docstring)."""
        now = self._clock()
        if engine is not self.engine:
            kept = {record.id for record in engine.records}
            gone = [self.engine.describe(record.id) for record in self.engine.records if record.id not in kept]
            self._emit(engine.restore(self.engine.records, now))
            self.engine = engine
            if self._publisher is not None:
                for record in engine.records:
                    self._publisher.publish_retained(alarm_suffix(record.id), alarm_state(engine.describe(record.id)))
            self._emit([removal(last.record, last.priority, last.message, last.limit, now) for last in gone])
        if events is not self.events:
            was_open = [] if self.events is None else self.events.open_events
            if events is not None:
                events.restore(was_open)
            kept = set() if events is None else {event.id for event in events.open_events}
            self.events = events
            self._emit([event.removed(now, REMOVED) for event in was_open if event.id not in kept])
            self._publish_open_events(now)

    def _publish_open_events(self, now: float) -> None:
        """The retained ``events/open`` summary; without an event engine (no ``events`` section,
        or a reload removed it) it is cleared, since nothing would keep it true."""
        if self._publisher is not None:
            self._publisher.publish_retained(
                OPEN_EVENTS_TOPIC, b"" if self.events is None else open_events(self.events.open_events, now))

    def provide_commands(self, commands: CommandRegistry) -> None:
        """``alarm_ack`` and ``alarm_shelve`` act on this engine from now on."""
        async def ack(args: AlarmAckArgs, command: Command) -> Mapping[str, Value]:
            transition = self._act(lambda: self.engine.acknowledge(args.alarm_id, self._clock(), command.origin))
            return {"alarm_id": args.alarm_id, "state": transition.record.state.value}

        async def shelve(args: AlarmShelveArgs, command: Command) -> Mapping[str, Value]:
            transition = self._act(lambda: self.engine.shelve(args.alarm_id, self._clock(), args.duration_s,
                                                              command.origin, args.reason))
            return {"alarm_id": args.alarm_id, "state": transition.record.state.value,
                    "until": transition.record.shelved_until}

        commands.provide("alarm_ack", ack)
        commands.provide("alarm_shelve", shelve)

    def _act(self, action: Callable[[], Transition]) -> Transition:
        try:
            transition = action()
        except AlarmRefused as exc:
            raise Refused(str(exc)) from None
        self._emit([transition])
        return transition

    def _emit(self, transitions: list[Transition] | list[StationEvent]) -> None:
        if not transitions:
            return
        self.transitions += len(transitions)
        for transition in transitions:
            _log(transition)
        self._out.put_nowait(list(transitions))

    async def _write_forever(self) -> None:
        while True:
            transitions = await self._out.get()
            try:
                await self._write(transitions)
            except Exception:  # noqa: BLE001 - one failing write must not stop the alarms behind it
                log.exception("alarm transitions not stored or not queued for MQTT", extra=kv(
                    alarms=",".join(t.record.id if isinstance(t, Transition) else t.id for t in transitions)))
            finally:
                self._out.task_done()

    async def _write(self, transitions: list[Transition | StationEvent]) -> None:
        alarms = [t for t in transitions if isinstance(t, Transition)]
        events = [t for t in transitions if isinstance(t, StationEvent)]
        if self._store is not None:
            await self._in_thread(self._store.save, [t.record for t in alarms], events)
        # The retained states first: whoever reacts to a transition on ``events`` by reading the
        # retained state finds the state that transition led to, not the one before. (Not for an
        # alarm the engine no longer has: a reload removed it, and its retained state is cleared.)
        if self._publisher is not None:
            configured = {record.id for record in self.engine.records}
            for alarm_id in dict.fromkeys(t.record.id for t in alarms if t.record.id in configured):
                self._publisher.publish_retained(alarm_suffix(alarm_id), alarm_state(self.engine.describe(alarm_id)))
            if events and self.events is not None:
                self._publisher.publish_retained(OPEN_EVENTS_TOPIC, open_events(self.events.open_events, self._clock()))
        for transition in transitions:
            if self._outbox is not None:
                encode = (functools.partial(alarm_transition, transition=transition)
                          if isinstance(transition, Transition) else
                          functools.partial(event_transition, event=transition))
                await self._outbox.append(encode, 0, topic=EVENTS_TOPIC)
        # Cleared only now that the removal is stored and in the outbox: the end is on record first.
        self._clear([t.record.id for t in alarms if t.record.state is AlarmState.REMOVED])

    def _clear(self, alarm_ids: list[str]) -> None:
        """Delete the retained state of alarms that no longer exist (an empty retained message),
        now and on every reconnection."""
        if self._publisher is not None:
            for alarm_id in alarm_ids:
                self._publisher.publish_retained(alarm_suffix(alarm_id), b"")

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


def removal(record: AlarmRecord, priority: Priority, message: str, limit: float | None, now: float) -> Transition:
    """The last transition of an alarm the station file no longer declares: to ``removed``, from
    the state it had (its priority and message when known, else ``low`` and why it went)."""
    return Transition(dataclasses.replace(record, state=AlarmState.REMOVED, changed=now), record.state, priority,
                      message, limit)


def _log(transition: Transition | StationEvent) -> None:
    if isinstance(transition, StationEvent):
        log.warning("station event", extra=kv(
            event=transition.id, state=transition.state.value, cause=transition.cause,
            escalation_h=transition.escalation_h, deadline=transition.deadline, value=transition.value,
            refund_pct=transition.refund_pct, duration_s=round(transition.duration_s), message=transition.message))
        return
    record = transition.record
    fields = kv(alarm=record.id, state=record.state.value, previous=transition.previous.value,
                priority=transition.priority.value, value=record.value, message=transition.message,
                origin=record.origin or None)
    if not transition.annunciate:
        log.debug("alarm (summarised: flood)", extra=fields)
    elif record.state is AlarmState.ACTIVE and transition.priority in (Priority.CRITICAL, Priority.HIGH):
        log.warning("alarm", extra=fields)
    else:
        log.info("alarm", extra=fields)
