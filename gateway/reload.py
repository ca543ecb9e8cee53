"""SIGHUP: re-read the station file (and the controller file), and apply only what changed.

What a reload may change, decided here once:

* **Hot** (``HOT_SECTIONS``, applied while everything else runs): ``devices``, ``groups``,
  ``alarms``, ``events``, ``report`` and the controller's settings (its own file or the station's
  ``controller:``).
* **Restart only** (``RESTART_SECTIONS``): ``station`` (its id names the outbox and every topic,
  its time zone the controller's and the events' days), ``mqtt`` (broker, TLS, identity, outbox
  limits: the session and the outbox are opened once), ``metrics`` (the listening socket), and
  whether a controller runs at all (its task, memory and commands are wired at start). The state
  directory and the file paths are command-line options, fixed for the process.

A file is taken whole or not at all. It is read and checked on a worker thread by the start-up
check itself (``gateway.preflight.load_startup``, the one ``heatgw check`` runs), so a refusal
reads as ``check`` would print it (``file:line:col: field: message``), and a file that changes a
restart-only section is refused whole too, naming the section: applying the rest would leave the
gateway running a configuration that is neither the old file nor the new one, under a config
hash that describes neither. A refusal is logged at error and changes nothing.

An accepted file is applied by difference (``plan_reload``): devices added are started, devices
removed are stopped (their connection closed, an offline status with reason ``removed`` sent),
devices whose settings changed (tags, link, the interval of a group they poll) are restarted
with the new plan, and devices that did not change are not touched: their task keeps its
schedule and misses no poll. Devices that share a connection (an RS-485 line) are one unit:
when one of them is restarted, so are the others on that line, since one port cannot have two
owners. Everything that holds station settings follows: the write path first (a writable tag the
file removed is refused from that moment on), the alarm and event engines (rebuilt only when
their rules or the devices of their tags changed, keeping every alarm's and event's state), the
controller (as its own reload does: what it learned is kept), the latest values, the retained
status and meta, and the telemetry filter and encoder (through the bus, ``StationReloaded``, so
the switch falls between the last old sample and the first new one). The outbox, its sequence
numbers and the MQTT session are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import GatewayConfig
from gateway.logs import kv
from gateway.preflight import Startup, load_startup
from gateway.protocols import build_devices, shared_key
from gateway.samples import DeviceStatus, StationReloaded
from gateway.yaml_source import ConfigError

if TYPE_CHECKING:
    from gateway.alarms.events import EventEngine
    from gateway.app import Gateway

log = logging.getLogger(__name__)

RESTART_SECTIONS = ("station", "mqtt", "metrics")
"""Sections of the station file a reload refuses to change (see the module's docstring)."""
HOT_SECTIONS = ("devices", "groups", "alarms", "events", "report", "controller")
"""Sections a reload applies while the gateway runs."""
RESTART_NEEDED = "restart needed (systemctl restart heatgw)"
REMOVED = "removed: no longer in the station file"
"""The reason of the offline status a removed device goes out with."""


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a new station file changes, by device and by tag."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: dict[str, str]  # device -> what changed in it (or the device it shares a line with)
    tags_added: tuple[str, ...]
    tags_removed: tuple[str, ...]
    restart_only: tuple[str, ...]  # restart-only sections the file changes
    sections: tuple[str, ...]  # hot sections the file changes

    @property
    def nothing(self) -> bool:
        """Whether the file changes nothing the station file says (the controller's file may)."""
        return not (self.sections or self.restart_only)

    @property
    def stopped(self) -> tuple[str, ...]:
        """Devices whose running task ends: removed or restarted."""
        return self.removed + tuple(self.changed)

    @property
    def started(self) -> tuple[str, ...]:
        """Devices given a new task: added or restarted."""
        return tuple(self.changed) + self.added


def plan_reload(old: GatewayConfig, new: GatewayConfig, *, controller_before: bool = False,
                controller_after: bool = False) -> ReloadPlan:
    """The difference between the running configuration and a new one. Pure."""
    restart_only = [section for section in RESTART_SECTIONS if getattr(old, section) != getattr(new, section)]
    if controller_before != controller_after:
        restart_only.append("controller (added)" if controller_after else "controller (removed)")
    added = tuple(name for name in new.devices if name not in old.devices)
    removed = tuple(name for name in old.devices if name not in new.devices)
    changed = {name: why for name in new.devices if name in old.devices
               if (why := _device_change(old, new, name))}
    touched = set(changed) | set(added) | set(removed)
    shared = {shared_key(name, old.devices[name]) for name in touched if name in old.devices}
    shared |= {shared_key(name, new.devices[name]) for name in touched if name in new.devices}
    for name in new.devices:
        if name in old.devices and name not in touched and shared_key(name, new.devices[name]) in shared:
            changed[name] = "shares its line with a device that changed"
    old_tags, new_tags = old.tags(), new.tags()
    return ReloadPlan(added, removed, changed,
                      tuple(tag for tag in new_tags if tag not in old_tags),
                      tuple(tag for tag in old_tags if tag not in new_tags), tuple(restart_only),
                      tuple(section for section in HOT_SECTIONS if getattr(old, section) != getattr(new, section)))


def _device_change(old: GatewayConfig, new: GatewayConfig, name: str) -> str:
    """What changed in device ``name`` ("" if nothing): its tags, its other settings, the
    settings of a group it polls."""
    before, after = old.devices[name], new.devices[name]
    changes = []
    added = [tag for tag in after.tags if tag not in before.tags]
    removed = [tag for tag in before.tags if tag not in after.tags]
    edited = [tag for tag in after.tags if tag in before.tags and after.tags[tag] != before.tags[tag]]
    for word, tags in (("tags added", added), ("tags removed", removed), ("tags changed", edited)):
        if tags:
            changes.append(f"{word} {','.join(tags)}")
    if before.model_dump(exclude={"tags"}) != after.model_dump(exclude={"tags"}):
        changes.append("device settings")
    groups = sorted({tag.group for tag in after.tags.values()})
    regrouped = [group for group in groups if old.groups.get(group) != new.groups.get(group)]
    if regrouped:
        changes.append(f"group {','.join(regrouped)}")
    return "; ".join(changes)


class StationReload:
    """One reload of ``heatgw run``'s files into a running gateway; call it (``Reloader`` does)."""

    def __init__(self, gateway: Gateway, config_path: Path, controller_path: Path | None,
                 state_dir: Path | None, running: Startup) -> None:
        """``controller_path`` is the ``--controller`` option as given (None: the station file's
        own section, if any); ``running`` is what runs now (the start-up's, then each reload's)."""
        self._gateway = gateway
        self._config_path, self._controller_path, self._state_dir = config_path, controller_path, state_dir
        self._running = running

    async def __call__(self) -> str | None:
        """Read, check, plan and apply; None, or why the file was refused (also logged at error)."""
        log.info("reload requested: reading the files", extra=kv(file=self._config_path,
                                                               controller=self._controller_path or "-"))
        try:
            startup = await asyncio.to_thread(load_startup, self._config_path, self._controller_path, self._state_dir)
        except ConfigError as exc:
            return self._refuse("\n".join(exc.messages))
        except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop the station
            log.exception("reload failed, the running configuration stays in force", extra=kv(file=self._config_path))
            return f"{self._config_path}: internal error while reading: {type(exc).__name__}"
        plan = plan_reload(self._gateway.config, startup.station,
                           controller_before=self._running.controller is not None,
                           controller_after=startup.controller is not None)
        if plan.restart_only:
            return self._refuse(f"{', '.join(plan.restart_only)} changed: {RESTART_NEEDED}")
        try:
            await self._apply(startup, plan)
        except Exception:  # noqa: BLE001 - the signal's task must log a bug, not die with it unseen
            log.exception("reload failed while being applied: the gateway may run parts of both files",
                          extra=kv(file=self._config_path, action=RESTART_NEEDED))
            return f"internal error while applying: {RESTART_NEEDED}"
        self._running = startup
        return None

    def _refuse(self, reason: str) -> str:
        log.error("reload refused, the running configuration stays in force",
                  extra=kv(file=self._config_path, reason=reason))
        return reason

    async def _apply(self, startup: Startup, plan: ReloadPlan) -> None:
        gateway, new = self._gateway, startup.station
        old = gateway.config
        kept = {name: device for name, device in gateway.devices.items() if name not in plan.stopped}
        gateway.writes.serve(kept)  # first: a writable tag the file removed is refused from now on
        await gateway.stop_devices(plan.stopped)
        engine, events = gateway.engines_for(new, startup.controller)
        running = gateway.alarms
        gateway.alarms.take_over(
            engine if _alarms_changed(old, new) else running.engine,
            events if events is None or running.events is None or _events_changed(old, new, events, running.events)
            else running.events)
        if gateway.controller is not None and startup.controller is not None and startup.controller_path is not None:
            gateway.controller.restation(new, startup.controller, startup.controller_path)
        await gateway.bus.publish(StationReloaded(new))  # the telemetry filter and encoder switch here
        for name in plan.removed:
            await gateway.bus.publish(DeviceStatus(name, False, time.time(), REMOVED))
        await gateway.restate(new, startup.controller)
        started = {name: new.devices[name] for name in plan.started}
        if started:
            gateway.start_devices(build_devices(started, new.groups, gateway.bus, state_dir=gateway.state_dir))
        gateway.writes.serve(gateway.devices)
        if plan.nothing:
            log.info("station reloaded: no change", extra=kv(file=self._config_path))
            return
        log.info("station reloaded", extra=kv(
            file=self._config_path, sections=",".join(plan.sections), devices_added=",".join(plan.added) or "-",
            devices_removed=",".join(plan.removed) or "-",
            devices_restarted="; ".join(f"{name} ({why})" for name, why in plan.changed.items()) or "-",
            tags_added=",".join(plan.tags_added) or "-", tags_removed=",".join(plan.tags_removed) or "-"))


def _alarms_changed(old: GatewayConfig, new: GatewayConfig) -> bool:
    """Whether the alarm engine must be rebuilt: its rules, or the device a tag lives on (a
    device's communication alarm suppresses the alarms of its tags), changed. Otherwise the
    running engine carries on with its timers (on-delays, rates) where they are."""
    if old.alarms != new.alarms:
        return True
    new_devices = {tag: device for tag, (device, _) in new.tags().items()}
    return any(new_devices.get(tag, device) != device for tag, (device, _) in old.tags().items())


def _events_changed(old: GatewayConfig, new: GatewayConfig, built: EventEngine, running: EventEngine) -> bool:
    """Whether the event engine must be rebuilt: its rules, the refund tiers or the rooms it
    watches (the controller's) changed. Otherwise it carries on with its memory (the make-up
    water totals of the last period, conditions being confirmed)."""
    return (old.events != new.events or old.report.refund_tiers != new.report.refund_tiers
            or built.rooms != running.rooms)


class Reloader:
    """SIGHUP's handler: runs ``reload`` as a task, one at a time.

    The signal callback only starts a task, so it cannot fail; a SIGHUP during a reload asks for
    one more reload after it (the file may have changed again), however many arrive.
    """

    def __init__(self, reload: Callable[[], Awaitable[object]]) -> None:
        self._reload = reload
        self._running: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self) -> None:
        if self._running is not None and not self._running.done():
            self._again = True
        else:
            self._running = asyncio.get_running_loop().create_task(self._run(), name="reload")

    async def _run(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self._reload()

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)
