"""The bridge's database worker: messages in, line protocol out, nothing acknowledged before it is written.

It turns messages into line protocol, batches them (size and age bounds), writes each batch
synchronously with gzip, retries with exponential backoff and jitter while the database is down or
slow, and only then asks for the acknowledgements. A bridge killed at any moment has acknowledged
only what is in the database; the broker redelivers the rest to it (same client id) and the replay
lands on the same series and timestamps.

**End to end, nothing is confirmed before it is durable.** After a batch is written, the worker
saves the sequence state (``state``: atomically, synced) and only then hands the acknowledgements to
the network thread and confirms to the stations (``delivered``: every number up to the watermark
and the spans above it), so a bridge killed at any moment restarts knowing at least everything it
ever confirmed: it never asks for, nor counts as missing, a number that is in the database. The
station deletes a message on that confirmation, not at the broker's PUBACK, so a message the
broker lost (a restart drops shared subscriptions, and what was routed to them) is still at the
station: the hole it leaves is asked for again (``cmd/replay``), and only the station's answer that
its outbox cap dropped it makes it a loss.

Everything here runs on the worker's own thread and its state is its own; what it takes from and
gives to the other threads goes through ``handoff.Handoff``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field

from gateway.historian.handoff import Handoff, Incoming
from gateway.historian.metrics import Figures, Stats, log_stats, metric_lines, write_histogram
from gateway.historian.quarantine import Quarantine
from gateway.historian.schema import (
    Kind,
    LineEncoder,
    PayloadError,
    StationMeta,
    Topic,
    parse_topic,
    printable,
    retained_clear,
)
from gateway.historian.sequence import Gap, Verdict
from gateway.historian.session import MetaSession
from gateway.historian.settings import HistorianSettings
from gateway.historian.state import PersistedState
from gateway.historian.writer import TOO_LARGE, DatabaseWriter, WriteError
from gateway.logs import Throttle, kv
from gateway.mqtt.payloads import (
    DELIVERED_MAX_RANGES,
    REPLAY_COMMAND,
    REPLAY_MAX_MESSAGES,
    Delivered,
    ReplayAnswer,
    Topics,
    delivered,
    replay_command,
)

log = logging.getLogger(__name__)

STATS_LOG_S = 60.0
SETTLE_S = 1.0


@dataclass(slots=True)
class Batch:
    """Lines waiting to be written together, and the messages they acknowledge once written."""

    lines: list[str] = field(default_factory=list)
    values: int = 0
    messages: list[Incoming] = field(default_factory=list)
    seqs: list[tuple[str, int]] = field(default_factory=list)
    opened: float | None = None

    def add(self, lines: list[str], values: int, now: float) -> None:
        if self.opened is None:
            self.opened = now
        self.lines.extend(lines)
        self.values += values


class Worker:
    """The worker thread's state and loop; ``run`` is the thread's target.

    Read from other threads, and only these (plain values, each read atomic): ``stats``,
    ``healthy``, ``quarantine.kept``, ``write_seconds`` (the metrics endpoint) and, once this
    thread has ended, ``state`` (the bridge saves it at close).
    """

    def __init__(self, settings: HistorianSettings, handoff: Handoff, state: PersistedState, meta: MetaSession,
                 writer: DatabaseWriter) -> None:
        self.settings = settings
        self._handoff = handoff
        self._state = state
        self._meta = meta
        self._writer = writer
        self._prefix = settings.topics.prefix
        self._encoder = LineEncoder(settings.site, settings.write_reason, settings.validation.limits())
        self.quarantine = Quarantine(settings.state_dir, settings.instance, settings.quarantine)
        self.stats = Stats()
        self.healthy = True
        self.write_seconds = write_histogram()
        self._rng = random.Random()  # the write retries' jitter
        self._throttle = Throttle()
        self._parked: dict[str, list[Incoming]] = {}
        self._parked_since: dict[str, float] = {}
        self._without_meta: set[str] = set()
        self._meta_used: dict[str, StationMeta | None] = {}
        self._written_seqs: dict[str, list[int]] = {}
        self._unconfirmed: set[str] = set()

    def run(self) -> None:
        try:
            self._work_loop()
        except Exception:
            # A bridge that stops writing but stays subscribed would stall its share of the fleet:
            # fail loudly and let systemd restart it. Nothing unwritten was acknowledged.
            log.exception("historian worker failed; unacknowledged messages stay at the broker")
            self._handoff.failed.set()
            self._handoff.closing.set()
        finally:
            self._handoff.worker_done.set()
            self._handoff.room.set()

    def _work_loop(self) -> None:
        batch = Batch()
        limits = self.settings.batch
        max_messages = max(1, self.settings.mqtt.max_pending_messages // 2)
        next_settle = next_metrics = next_report = next_stats = next_confirm = time.monotonic()
        while True:
            self._handoff.progress["worker"] = time.monotonic()
            self._handoff.arrived.clear()
            now = time.monotonic()
            wall = time.time()
            while not self._handoff.peer_reports.empty():
                station, first, last = self._handoff.peer_reports.get()
                self._state.tracker.merge(station, first, last, now=wall)
                self._unconfirmed.add(station)
            while not self._handoff.answers.empty():
                self._take_answer(*self._handoff.answers.get(), wall)
            while self._handoff.inbox and batch.values < limits.max_values and len(batch.messages) < max_messages:
                self._take(self._handoff.inbox.popleft(), batch, now, wall)
            self._unpark(batch, now, wall)
            closing = self._handoff.closing.is_set()
            if now >= next_settle and self.healthy:
                self._ask_again(self._state.tracker.due(wall, self.settings.sequence.replay_retry_s, REPLAY_MAX_MESSAGES),
                                wall)
                next_settle = now + SETTLE_S
            if now >= next_metrics:
                batch.add(metric_lines(self.settings.instance, self._figures(), wall), 0, now)
                next_metrics = now + self.settings.metrics_interval_s
            if now >= next_stats:
                log_stats(self._figures())
                next_stats = now + STATS_LOG_S
            if now >= next_report:
                self._publish_written()
                next_report = now + self.settings.sequence.peer_report_s
            due = (batch.values >= limits.max_values or len(batch.messages) >= max_messages
                   or (batch.opened is not None and now - batch.opened >= limits.max_age_s)
                   or (closing and not self._handoff.inbox))
            if due and (batch.lines or batch.messages):
                if not self._flush(batch):
                    return  # abandoned at shutdown: unacknowledged, the broker keeps it
                batch = Batch()
            if self._unconfirmed and not batch.messages and (now >= next_confirm or closing):
                # Only between batches: a number converted into an unwritten batch is not held yet.
                self._state.save_sequences()
                self._confirm(wall)
                next_confirm = now + self.settings.sequence.peer_report_s
            if closing and not self._handoff.inbox and not batch.lines and not batch.messages:
                self._publish_written()
                return
            if not self._handoff.inbox:
                timeout = 0.1 if batch.opened is None else max(0.0, batch.opened + limits.max_age_s - now)
                self._handoff.arrived.wait(min(timeout, 0.1))

    def _take(self, item: Incoming, batch: Batch, now: float, wall: float) -> None:
        """Convert one message into the batch, or park it until its station's meta is known."""
        topic = parse_topic(self._prefix, item.topic)
        if topic is None or topic.kind is Kind.META:
            self._invalid(item, f"unexpected topic {item.topic!r}", "?", batch)
            return
        if retained_clear(topic, item.payload):
            log.debug("retained state cleared by its station; nothing to store", extra=kv(topic=printable(item.topic)))
            batch.messages.append(item)
            return
        station = topic.station
        if station in self._parked or (
                station not in self._handoff.metas and station not in self._without_meta
                and self.settings.sequence.meta_wait_s > 0):
            if self._handoff.closing.is_set():
                return  # left unacknowledged: redelivered after the restart, when meta is known
            self._parked.setdefault(station, []).append(item)
            self._parked_since.setdefault(station, now)
            return
        self._convert(item, topic, batch, now, wall)

    def _unpark(self, batch: Batch, now: float, wall: float) -> None:
        """Release parked stations whose meta arrived, or that waited long enough without it.

        At shutdown parked messages are left unacknowledged rather than written without their
        tags: the broker hands them back after the restart, when the meta will be known.
        """
        for station in list(self._parked):
            waited = now - self._parked_since[station]
            if station not in self._handoff.metas and (waited < self.settings.sequence.meta_wait_s or self._handoff.closing.is_set()):
                continue
            if station not in self._handoff.metas:
                self._without_meta.add(station)
                log.warning("no meta for station; writing its samples without device and unit tags", extra=kv(
                    station=station, waited_s=round(waited, 1)))
            for item in self._parked.pop(station):
                topic = parse_topic(self._prefix, item.topic)
                assert topic is not None
                self._convert(item, topic, batch, now, wall)
            del self._parked_since[station]

    def _station_meta(self, station: str) -> StationMeta | None:
        meta = self._handoff.metas.get(station)
        if self._meta_used.get(station) is not meta:
            self._encoder.forget(station)
            self._meta_used[station] = meta
            if meta is not None and station in self._without_meta:
                self._without_meta.discard(station)
                log.info("meta arrived for station; its new samples carry device and unit", extra=kv(station=station))
        return meta

    def _convert(self, item: Incoming, topic: Topic, batch: Batch, now: float, wall: float) -> None:
        meta = self._station_meta(topic.station)
        if topic.kind is Kind.STATUS and not self._state.statuses.is_new(topic.station, item.payload):
            # A retained or redelivered copy of the status already stored: not a new transition.
            self.stats.status_repeats += 1
            log.debug("station status repeated; not stored again", extra=kv(station=topic.station))
            batch.messages.append(item)
            return
        try:
            if topic.kind is Kind.TELEMETRY:
                encoded = self._encoder.telemetry(topic.station, meta, item.payload)
            elif topic.kind is Kind.STATUS:
                encoded = self._encoder.status(topic, meta, item.payload, wall)
                self._state.statuses.remember(topic.station, item.payload)
            else:
                encoded = self._encoder.state(topic, meta, item.payload)
        except PayloadError as exc:
            self._invalid(item, str(exc), topic.station, batch, exc.seq)
            return
        except Exception as exc:  # noqa: BLE001 - a message the encoder cannot handle is poison for this
            # message only: quarantined and acknowledged, never a stop of the bridge (and a crash loop).
            if self._throttle.allow("encoder-failed", now) is not None:
                log.exception("message could not be encoded; quarantined", extra=kv(station=printable(topic.station)))
            self._invalid(item, f"encoder failed: {type(exc).__name__}", topic.station, batch)
            return
        if encoded.skipped:
            self.stats.skipped_samples += encoded.skipped
            reason = f"{encoded.skipped} samples skipped, first: {encoded.skip_reason}; the others were written"
            self._keep(item, reason, topic.station, encoded.seq)
            held = self._throttle.allow(f"partial:{topic.station}", now)
            if held is not None:
                log.warning("samples not following the MQTT contract were skipped", extra=kv(
                    station=printable(topic.station), seq=encoded.seq, skipped_samples=encoded.skipped,
                    reason=encoded.skip_reason, suppressed=held))
        if encoded.unknown_strings:
            log.debug("text fields not written", extra=kv(station=topic.station, kind=topic.kind.value,
                                                          fields=",".join(encoded.unknown_strings)))
        if encoded.seq is not None:
            verdict = self._state.tracker.observe(topic.station, encoded.seq, wall)
            if verdict is Verdict.LATE:
                log.info("late telemetry filled a reported gap", extra=kv(station=topic.station, seq=encoded.seq))
            batch.seqs.append((topic.station, encoded.seq))
        batch.add(encoded.lines, encoded.values, now)
        batch.messages.append(item)

    def _invalid(self, item: Incoming, reason: str, station: str, batch: Batch, seq: int | None = None) -> None:
        """Contract violations are counted, quarantined, logged (throttled) and acknowledged with
        the batch: no retry can fix them, and holding them back would stall every station.

        A refused message that carries its number is held, in the quarantine, so the number counts
        as delivered: otherwise the station would keep it unconfirmed and resend it on every replay
        request, to be refused again, for as long as the outbox keeps it.
        """
        self.stats.invalid_messages += 1
        self._keep(item, reason, station, seq)
        if seq is not None:
            self._state.tracker.observe(station, seq, time.time())
            batch.seqs.append((station, seq))
        held = self._throttle.allow(f"invalid:{station}", time.monotonic())
        if held is not None:
            log.warning("message does not follow the MQTT contract; quarantined and acknowledged", extra=kv(
                station=printable(station), seq="-" if seq is None else seq, topic=printable(repr(item.topic)),
                reason=printable(reason), quarantine=str(self.quarantine.path), suppressed=held))
        batch.messages.append(item)

    def _keep(self, item: Incoming, reason: str, station: str, seq: int | None) -> None:
        """A copy in the quarantine; a disk that refuses is logged, and the message acknowledged all the same."""
        try:
            self.quarantine.keep(item.topic, item.payload, reason, station, seq)
        except OSError as exc:
            if self._throttle.allow("quarantine-failed", time.monotonic()) is not None:
                log.error("cannot write the quarantine; the refused message is only counted", extra=kv(
                    path=str(self.quarantine.path), reason=str(exc)))

    def _flush(self, batch: Batch) -> bool:
        """Write the batch until it is written; then acknowledge it. False if abandoned at shutdown."""
        body = batch.lines
        failures = 0
        while True:
            try:
                self._write(body)
                break
            except WriteError as exc:
                failures += 1
                delay = self.settings.retry.delay(failures, self._rng)
                self.stats.write_failures += 1
                self.healthy = False
                if failures == 1 or self._throttle.allow("write-failed", time.monotonic()) is not None:
                    log.warning("database write failed, retrying", extra=kv(
                        reason=exc.reason, values=batch.values, attempt=failures, retry_s=round(delay, 1),
                        unacknowledged=self._handoff.pending))
                if self._handoff.abandon.wait(delay):
                    return False
                self._handoff.progress["worker"] = time.monotonic()  # waiting for the database is not being stuck
        if failures:
            log.info("database writes resumed", extra=kv(failed_attempts=failures, values=batch.values))
        self.healthy = True
        self.stats.written_values += batch.values
        self.stats.written_batches += 1
        # What was written is on disk in the sequence state before anyone is told it was: a bridge
        # killed after the acknowledgements must not restart believing those numbers are missing
        # (nor store a redelivered status again as a new transition).
        self._state.save_sequences()
        self._state.save_statuses()
        self._handoff.acks.append([(item.generation, item.mid, item.qos) for item in batch.messages if item.qos > 0])
        self._handoff.released += len(batch.messages)
        self._handoff.room.set()
        for station, seq in batch.seqs:
            self._written_seqs.setdefault(station, []).append(seq)
            self._unconfirmed.add(station)
        return True

    def _write(self, lines: list[str]) -> None:
        """One attempt; a batch too large for the database is halved until it fits."""
        self._handoff.progress["worker"] = time.monotonic()
        try:
            with self.write_seconds.time():
                self._writer.write("\n".join(lines).encode())
        except WriteError as exc:
            if exc.status == TOO_LARGE and len(lines) > 1:
                half = len(lines) // 2
                self._write(lines[:half])
                self._write(lines[half:])
                return
            if exc.retry:
                raise
            self.stats.rejected_values += len(lines)
            log.error("database refused lines; they are dropped (retrying cannot change its answer)", extra=kv(
                reason=exc.reason, lines=len(lines), first=lines[0][:200] if lines else ""))

    def _report_gaps(self, gaps: list[Gap]) -> None:
        for gap in gaps:
            state = self._state.tracker.stations[gap.station]
            self._unconfirmed.add(gap.station)
            log.warning("telemetry sequence gap", extra=kv(
                station=gap.station, first_missing=gap.first, last_missing=gap.last, missing=gap.size,
                reason=gap.reason, station_gaps=state.gaps, station_missing=state.missing))

    def _ask_again(self, holes: list[Gap], wall: float) -> None:
        """Ask the stations to send their holes again (``cmd/replay``); report the ones given up.

        Every bridge of a group asks for the same hole under the same command id within one retry
        period, so the station executes it once and answers the others from its memory.
        """
        retry_s = self.settings.sequence.replay_retry_s
        self._report_gaps([hole for hole in holes if hole.reason])
        for hole in holes:
            if hole.reason:
                continue
            command_id = f"{self.settings.topics.share_group}:{hole.first}-{hole.last}:{int(wall // retry_s)}"
            payload = replay_command(command_id, f"historian/{self.settings.instance}", wall + retry_s,
                                     hole.first, hole.last)
            self._meta.publish(Topics(self._prefix, hole.station).command(REPLAY_COMMAND), payload)
            log.info("replay requested", extra=kv(station=hole.station, from_seq=hole.first, to_seq=hole.last,
                                                  id=command_id))

    def _take_answer(self, station: str, answer: ReplayAnswer | str, wall: float) -> None:
        """A station's answer to a replay request: what its cap dropped is lost, said once."""
        if isinstance(answer, str):
            log.warning("replay refused by the station", extra=kv(station=station, reason=answer))
            return
        gaps, confirmed = self._state.tracker.resolve(station, answer.first, answer.last, answer.dropped, answer.resent,
                                                "dropped by the station's outbox cap", wall)
        self._report_gaps(gaps)
        if confirmed:
            self._unconfirmed.add(station)
            log.info("numbers the station no longer has were confirmed earlier: not missing", extra=kv(
                station=station, from_seq=answer.first, to_seq=answer.last, filled=confirmed))

    def _confirm(self, wall: float) -> None:
        """Retained ``delivered`` for every station whose held numbers changed since the last one."""
        for station in sorted(self._unconfirmed):
            upto, ranges = self._state.tracker.delivered(station, DELIVERED_MAX_RANGES)
            self._meta.publish(Topics(self._prefix, station).delivered,
                                      delivered(Delivered(upto, tuple(ranges)), wall), retain=True)
        self._unconfirmed.clear()

    def _publish_written(self) -> None:
        """Tell the other bridges of the group which sequence numbers this one has written."""
        if not self._written_seqs:
            return
        seen = {station: _spans(seqs) for station, seqs in self._written_seqs.items()}
        self._written_seqs = {}
        payload = json.dumps({"instance": self.settings.instance, "seen": seen}, separators=(",", ":"))
        self._meta.publish(self._meta.peer_topic, payload)

    def _figures(self) -> Figures:
        return Figures(received=self._handoff.received, stats=self.stats, invalid_meta=self._meta.invalid,
                       quarantined=self.quarantine.kept, pending=self._handoff.pending,
                       parked=sum(len(items) for items in self._parked.values()),
                       stations=self._state.tracker.stations)


def _spans(seqs: list[int]) -> list[list[int]]:
    """[5, 3, 4, 9] -> [[3, 5], [9, 9]]: compact for the peer report."""
    spans: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if spans and seq == spans[-1][1] + 1:
            spans[-1][1] = seq
        else:
            spans.append([seq, seq])
    return spans
