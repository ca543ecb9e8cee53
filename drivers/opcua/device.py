"""One OPC UA device on the bus: subscriptions (or Read polling) per group, honest qualities.

The run loop connects, resolves every tag's node by namespace URI, and then per group either
creates a subscription (publishing interval, sampling interval, queue size, a data-change filter
with the tags' deadband) or, for groups configured ``poll``, servers that refuse subscriptions
and nodes that refuse a monitored item, reads the nodes in batches at the group's interval.

Changes are published as they arrive, stamped with the PLC's source timestamp. Between changes
each value is re-published once per group interval, stamped with the time the server last
confirmed the subscription (its last notification or keep-alive): an unchanged value of a live
subscription is a current value, and consumers that judge freshness by a sample's age (the
latest-values table, the controller) must see it so. A dead subscription confirms nothing, so
its values age and turn stale.

A session is lost when asyncua's keep-alive read fails or the socket closes, when the server
ends a subscription, or when a subscription stays silent beyond its keep-alive: then every tag
is published BAD with the reason, ``DeviceStatus(online=False)`` goes on the bus, and the device
reconnects with the station's backoff, resolving the nodes again (the namespace index may have
changed) and recreating the subscriptions. A node that is gone marks only its own tag BAD.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from asyncua import ua

from drivers.base import DeviceError, DeviceTimeout, DeviceUnreachable, Quality, Reason
from drivers.opcua.config import OpcUaDevice, OpcUaTag
from drivers.opcua.session import Node, Session, device_errors
from drivers.opcua.values import sample_of, status_name, to_variant
from gateway.acquisition.device import PreparedWrite, Unrepresentable
from gateway.acquisition.models import PollGroup
from gateway.acquisition.stats import DeviceStats
from gateway.bus import Bus
from gateway.logs import kv
from gateway.samples import DeviceStatus, Sample, SampleBatch

log = logging.getLogger(__name__)

CONNECT_REQUESTS = 8
"""Requests a connect spends before the first sample (endpoints, hello, channel, session,
activation, namespaces, browse paths, types): each may take ``timeout_s``."""
_FILTER_REFUSED = {
    ua.StatusCodes.BadFilterNotAllowed, ua.StatusCodes.BadMonitoredItemFilterUnsupported,
    ua.StatusCodes.BadMonitoredItemFilterInvalid, ua.StatusCodes.BadDeadbandFilterInvalid,
    ua.StatusCodes.BadServiceUnsupported, ua.StatusCodes.BadMonitoringModeInvalid,
}


class SessionLost(Exception):
    """The session ended; the message says how (keep-alive, closed socket, silent subscription)."""


@dataclass(eq=False)
class _Group:
    """One group's acquisition on the current session."""

    name: str
    interval_s: float  # the publishing interval (of reads, when polled)
    refresh_s: float  # the group's own interval: unchanged values are re-published this often
    subscribed: list[str] = field(default_factory=list)
    polled: list[str] = field(default_factory=list)
    subscription_id: int | None = None
    keepalive_count: int = 1
    last_heard: float = 0.0  # loop time of the last notification or keep-alive
    confirmed: float = 0.0  # wall time of the same

    def silence_limit_s(self, timeout_s: float) -> float:
        """How long the subscription may stay silent before its values cannot be vouched for: two
        keep-alive periods (the server sends one per ``keepalive_count`` intervals) and a request's timeout."""
        return 2 * self.interval_s * self.keepalive_count + timeout_s


class OpcUaDeviceRunner:
    """The ``gateway.acquisition.device.Device`` of one OPC UA server."""

    def __init__(
        self,
        name: str,
        config: OpcUaDevice,
        groups: Mapping[str, PollGroup],
        bus: Bus,
        *,
        state_dir: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._name = name
        self.config = config
        self.bus = bus
        self._groups_config = groups
        self._state_dir = state_dir
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._online: bool | None = None
        self._stats = DeviceStats()
        self.progressed: float | None = None
        self._session: Session | None = None
        self._nodes: dict[str, Node] = {}
        self._types: dict[str, ua.VariantType] = {}  # last known declared types, kept across sessions for writes
        self._handles: dict[int, str] = {}  # monitored item client handle -> tag
        self._latest: dict[str, Sample] = {}
        self._sent_at: dict[str, float] = {}  # wall time each tag was last published
        self._lost: asyncio.Future[str] | None = None
        self._active_groups: list[_Group] = []

    # --- the Device interface ---

    @property
    def name(self) -> str:
        return self._name

    @property
    def tags(self) -> Mapping[str, OpcUaTag]:
        return self.config.tags

    @property
    def online(self) -> bool | None:
        return self._online

    @property
    def stats(self) -> DeviceStats:
        return self._stats

    def patience_s(self) -> float:
        """A connect at its slowest, then the longest backoff; while connected the keep-alive
        watch steps at least every ``keepalive_s``."""
        connect = self.config.timeout_s * CONNECT_REQUESTS
        backoff = self.config.backoff.max_s * (1 + self.config.backoff.jitter)
        return connect + backoff + self.config.keepalive_s + self.config.timeout_s

    def stalled(self, now: float) -> bool:
        return self.progressed is not None and now - self.progressed > self.patience_s()

    def prepare_write(self, tag: str, value: float) -> PreparedWrite:
        declared = self._types.get(tag)
        if declared is None:
            raise Unrepresentable(f"the type of {tag}'s node is not known yet (no session since start)")
        return PreparedWrite(tag, value, to_variant(value, declared))

    async def write(self, prepared: PreparedWrite) -> None:
        session, node = self._node_for(prepared.tag)
        assert isinstance(prepared.wire, ua.Variant)
        self._stats.requests += 1
        await session.write(node.node_id, prepared.wire)

    async def read_tag(self, tag: str) -> Sample:
        session, node = self._node_for(tag)
        self._stats.requests += 1
        (data,) = await session.read([node.node_id])
        return sample_of(tag, self.config.tags[tag], data, self._wall_clock())

    def _node_for(self, tag: str) -> tuple[Session, Node]:
        session = self._session
        if session is None or not self._online:
            raise DeviceUnreachable(f"{self.config.endpoint}: no session")
        node = self._nodes.get(tag)
        if node is None:
            raise DeviceUnreachable(f"{tag}: its node is not on the server")
        return session, node

    # --- the run loop ---

    async def run(self) -> None:
        """Connect, acquire until the session is lost, back off, again; until cancelled."""
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            self.progressed = loop.time()
            reason, detail = Reason.CONNECTION_LOST, ""
            try:
                await self._session_lifetime()
            except DeviceError as exc:
                reason = Reason.TIMEOUT if isinstance(exc, DeviceTimeout) else Reason.CONNECTION_LOST
                detail = str(exc)
            except SessionLost as exc:
                detail = str(exc)
            except Exception:  # noqa: BLE001 - a device must outlive any one surprise from its server
                # A bug or an unforeseen answer costs this device one backoff, never the task: a
                # silently dead device would leave its last values looking current.
                log.exception("unexpected error in the OPC UA session; reconnecting", extra=kv(device=self._name))
                detail = "internal error, see log"
            self._stats.failures += 1
            self._stats.record_error(reason)
            answered = self._online is True
            await self._mark_lost(reason, detail)
            failures = 1 if answered else failures + 1
            await asyncio.sleep(self.config.backoff.delay(failures, self._rng))

    async def _session_lifetime(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = lost = loop.create_future()
        session = Session(self.config, self._state_dir, self._on_lost)
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await asyncio.wait_for(self._start(session), self.config.timeout_s * CONNECT_REQUESTS)
            except (TimeoutError, asyncio.TimeoutError):
                raise DeviceTimeout(f"{self.config.endpoint}: connect not done within "
                                    f"{self.config.timeout_s * CONNECT_REQUESTS:g} s") from None
            tasks.append(asyncio.create_task(self._watch(), name=f"opcua-watch:{self._name}"))
            tasks += [asyncio.create_task(self._poll(session, group), name=f"opcua-poll:{self._name}:{group.name}")
                      for group in self._active_groups if group.polled]
            tasks += [asyncio.create_task(self._refresh(group), name=f"opcua-refresh:{self._name}:{group.name}")
                      for group in self._active_groups if group.subscribed]
            await asyncio.wait([lost, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc
            raise SessionLost(lost.result() if lost.done() else "session ended")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._session = None
            await session.close()

    def _on_lost(self, why: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)

    async def _start(self, session: Session) -> None:
        """Open, resolve, subscribe (or plan polls); publish the tags that cannot be read."""
        await session.open()
        self._session = session
        nodes, problems = await session.resolve(self.config.tags)
        self._nodes = nodes
        self._types.update({tag: node.variant for tag, node in nodes.items() if node.variant is not None})
        for tag, problem in problems.items():
            log.warning("tag cannot be read on this server", extra=kv(device=self._name, tag=tag, reason=problem))
        self._active_groups = [self._plan(group) for group in sorted({t.group for t in self.config.tags.values()})]
        self._handles = {}
        for group in self._active_groups:
            if group.subscribed:
                await self._subscribe(session, group)
        await self._mark_online()
        now = self._wall_clock()
        for group in self._active_groups:
            bad = [Sample(tag, None, now, Quality.BAD, problem) for tag, problem in problems.items()
                   if self.config.tags[tag].group == group.name]
            if bad:
                await self._publish(group, bad)

    def _plan(self, name: str) -> _Group:
        interval = self._groups_config[name].interval_s if name in self._groups_config else 1.0
        settings = self.config.subscription(name)
        group = _Group(name, settings.publishing_interval_s or interval, interval)
        members = [tag for tag, cfg in self.config.tags.items() if cfg.group == name and tag in self._nodes]
        if self.config.group_mode(name) == "poll":
            group.polled = members
        else:
            group.subscribed = members
        return group

    # --- subscriptions ---

    async def _subscribe(self, session: Session, group: _Group) -> None:
        """Create the group's subscription and its monitored items; what the server refuses is polled."""
        settings = self.config.subscription(group.name)
        group.keepalive_count = max(1, math.ceil(self.config.keepalive_s / group.interval_s))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=group.interval_s * 1000, RequestedLifetimeCount=group.keepalive_count * 10,
            RequestedMaxKeepAliveCount=group.keepalive_count, MaxNotificationsPerPublish=0, PublishingEnabled=True)
        try:
            with device_errors("create subscription", self.config.timeout_s):
                result = await session.client.uaclient.create_subscription(params, self._publish_callback(group))
        except DeviceError as exc:
            if isinstance(exc, (DeviceUnreachable, DeviceTimeout)):
                raise
            log.warning("server refuses subscriptions; reading the group instead", extra=kv(
                device=self._name, group=group.name, reason=str(exc)))
            group.polled, group.subscribed = group.polled + group.subscribed, []
            return
        group.subscription_id = result.SubscriptionId
        group.last_heard = asyncio.get_running_loop().time()
        group.confirmed = self._wall_clock()
        requests = []
        for tag in group.subscribed:
            handle = len(self._handles) + 1
            self._handles[handle] = tag
            requests.append(self._monitored_item(tag, handle, settings.sampling_interval_s, settings.queue_size,
                                                 group.interval_s))
        with device_errors("create monitored items", self.config.timeout_s):
            results = await session.client.uaclient.create_monitored_items(ua.CreateMonitoredItemsParameters(
                SubscriptionId=result.SubscriptionId, ItemsToCreate=requests,
                TimestampsToReturn=ua.TimestampsToReturn.Both))
        refused = [(tag, r.StatusCode) for tag, r in zip(list(group.subscribed), results, strict=True)
                   if not r.StatusCode.is_good()]
        for tag, code in refused:
            group.subscribed.remove(tag)
            if code.value in _FILTER_REFUSED:
                group.polled.append(tag)
            else:
                self._nodes.pop(tag, None)
                await self._publish(group, [Sample(tag, None, self._wall_clock(), Quality.BAD, status_name(code))])
        if refused:
            log.warning("server refused monitored items", extra=kv(
                device=self._name, group=group.name, refused=",".join(f"{t}:{status_name(c)}" for t, c in refused)))

    def _monitored_item(self, tag: str, handle: int, sampling_s: float | None, queue: int,
                        interval_s: float) -> ua.MonitoredItemCreateRequest:
        data_filter = self.config.data_filter(tag)
        node = self._nodes[tag]
        parameters = ua.MonitoringParameters(
            ClientHandle=handle, SamplingInterval=(interval_s if sampling_s is None else sampling_s) * 1000,
            QueueSize=queue, DiscardOldest=True)
        if data_filter.filter_deadband_percent is not None:
            parameters.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                    DeadbandType=ua.DeadbandType.Percent,
                                                    DeadbandValue=data_filter.filter_deadband_percent)
        elif data_filter.filter_deadband is not None:
            parameters.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                    DeadbandType=ua.DeadbandType.Absolute,
                                                    DeadbandValue=data_filter.filter_deadband)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node.node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=parameters)

    def _publish_callback(self, group: _Group) -> Callable[[ua.PublishResult], object]:
        async def on_publish(result: ua.PublishResult) -> None:
            group.last_heard = asyncio.get_running_loop().time()
            group.confirmed = received = self._wall_clock()
            samples: list[Sample] = []
            for notification in result.NotificationMessage.NotificationData or ():
                if isinstance(notification, ua.DataChangeNotification):
                    samples.extend(self._changes(notification, received))
                elif isinstance(notification, ua.StatusChangeNotification):
                    self._on_lost(f"subscription ended: {status_name(notification.Status)}")
            if samples:
                await self._publish(group, samples)
        return on_publish

    def _changes(self, notification: ua.DataChangeNotification, received: float) -> Iterable[Sample]:
        tags = self.config.tags
        for item in notification.MonitoredItems:
            tag = self._handles.get(item.ClientHandle)
            if tag is None:
                continue
            sample = sample_of(tag, tags[tag], item.Value, received)
            if not self._within_deadband(sample):
                yield sample

    def _within_deadband(self, sample: Sample) -> bool:
        """A change the server should have filtered: some servers ignore a percent deadband."""
        node = self._nodes.get(sample.tag)
        last = self._latest.get(sample.tag)
        if node is None or node.deadband <= 0 or last is None or last.quality is not sample.quality:
            return False
        if not isinstance(sample.value, int | float) or not isinstance(last.value, int | float) \
                or isinstance(sample.value, bool):
            return False
        return abs(sample.value - last.value) <= node.deadband

    async def _refresh(self, group: _Group) -> None:
        """Re-publish the group's unchanged good values once per group interval, as confirmed by the server."""
        while True:
            await asyncio.sleep(group.refresh_s)
            now = self._wall_clock()
            if now - group.confirmed > group.silence_limit_s(self.config.timeout_s):
                continue  # nothing confirmed lately: the watch decides whether the session is gone
            samples = [replace(last, timestamp=max(last.timestamp, group.confirmed))
                       for tag in group.subscribed
                       if (last := self._latest.get(tag)) is not None and last.quality is Quality.GOOD
                       and now - self._sent_at.get(tag, 0.0) >= group.refresh_s * 0.999]
            if samples:
                await self._publish(group, samples, refreshed=True)

    async def _watch(self) -> None:
        """The session's pulse: subscriptions silent beyond their keep-alive end it."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.keepalive_s)
            self.progressed = now = loop.time()
            for group in self._active_groups:
                if group.subscription_id is None:
                    continue
                silent = now - group.last_heard
                if silent > group.silence_limit_s(self.config.timeout_s):
                    self._on_lost(f"subscription of group {group.name} silent for {silent:.1f} s "
                                  f"(no notification or keep-alive)")

    # --- polling ---

    async def _poll(self, session: Session, group: _Group) -> None:
        """Read the group's nodes at its interval, on absolute deadlines (as the Modbus poller does)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._stats.record_lateness(loop.time() - deadline)
            tags = [tag for tag in group.polled if tag in self._nodes]
            started = time.perf_counter()
            self._stats.requests += math.ceil(len(tags) / self.config.max_nodes_per_read)
            values = await session.read([self._nodes[tag].node_id for tag in tags])
            self._stats.record_rtt(time.perf_counter() - started)
            received = self._wall_clock()
            self.progressed = loop.time()
            samples = [sample_of(tag, self.config.tags[tag], data, received)
                       for tag, data in zip(tags, values, strict=True)]
            await self._publish(group, samples)
            missed = max(0, int((loop.time() - deadline) // group.interval_s))
            deadline += group.interval_s * (missed + 1)

    # --- the bus ---

    async def _publish(self, group: _Group, samples: list[Sample], *, refreshed: bool = False) -> None:
        now = self._wall_clock()
        for sample in samples:
            if not refreshed:
                self._latest[sample.tag] = sample
            self._sent_at[sample.tag] = now
        self._stats.polls += 1
        self._stats.values += len(samples)
        await self.bus.publish(SampleBatch(self._name, group.name, tuple(samples)))

    async def _mark_online(self) -> None:
        if self._online is True:
            return
        self._online = True
        log.info("device online", extra=kv(device=self._name, endpoint=self.config.endpoint))
        await self.bus.publish(DeviceStatus(self._name, True, self._wall_clock()))

    async def _mark_lost(self, reason: Reason, detail: str) -> None:
        """Every tag BAD and the device offline, once per loss rather than once per retry."""
        if self._online is False:
            return
        self._online = False
        self._latest.clear()
        now = self._wall_clock()
        text = f"{reason.value}: {detail}" if detail else reason.value
        by_group: dict[str, list[Sample]] = {}
        for tag, cfg in self.config.tags.items():
            by_group.setdefault(cfg.group, []).append(Sample(tag, None, now, Quality.BAD, text))
        for group, samples in sorted(by_group.items()):
            await self.bus.publish(SampleBatch(self._name, group, tuple(samples)))
        log.warning("device lost", extra=kv(device=self._name, endpoint=self.config.endpoint,
                                            reason=reason.value, detail=detail))
        await self.bus.publish(DeviceStatus(self._name, False, now, text))
