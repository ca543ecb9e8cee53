"""The durable outbox: messages wait here, on disk, until the historian confirms it holds them.

SQLite in WAL mode, one row per message, keyed by the station's sequence number. Every message
that must not be lost goes through here (telemetry, and the station's alarm and event transitions),
each with the topic below ``<prefix>/<station>/`` it is published on; they share one sequence, so
a receiver checks one series of numbers per station for gaps, whatever the topic.

* **Sequence numbers** are assigned here, in the same transaction that stores the message, from
  an ``AUTOINCREMENT`` key: they never repeat, even after every row was deleted and the process
  restarted, so a receiver can trust a gap or a duplicate it sees.
* **Durability** (``outbox.durability``): with ``full`` (the default) SQLite syncs the WAL at every
  commit, so a message that was given a sequence number survives a power cut. With ``normal`` it
  survives a process crash (SIGKILL, OOM kill) but a power cut may roll back the last commits; as
  their sequence numbers may already have been published, the next start would give the same
  numbers to different messages. Stations lose power, so ``full`` is the default; one fsync per
  message (about one a second) is cheap. ``normal`` is for flash media where writes are precious
  and power is backed up.
* **Rows are deleted when the historian confirms them** (``confirm``, from the retained
  ``delivered`` message: every number up to ``upto`` and the ranges beyond), never at the broker's
  PUBACK: a broker that restarts without its subscriptions, or a bridge that loses a message,
  leaves the station holding it, to send again on request (``replay``) or at the next connection.
  Losing a delete to a crash only re-sends a message, which the receiver counts as a duplicate.
* **Cap** (``outbox.max_bytes``, ``outbox.max_age_h``): when the stored messages use more pages
  than allowed, or the oldest is too old, the OLDEST are deleted. Drops are counted (persistently),
  logged, and reported in the status message; the highest number dropped is kept, so that a
  replay request for a dropped number is answered "dropped by the cap". The database file keeps its size: freed pages are
  reused for the next backlog instead of being returned to the file system, so the file never
  outgrows the cap plus the WAL (``journal_size_limit``).
* **Compression**: payloads are stored zlib-compressed (they are JSON with repeating tag names);
  replay decompresses, which costs far less than the disk it saves during a 72-hour outage.

``Outbox`` is synchronous and must be used from one thread. ``AsyncOutbox`` is the event loop's
handle on it: every call runs on one dedicated thread, so an fsync that takes 50 ms on a slow
industrial flash card delays the outbox, never the poller.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from gateway.logs import kv
from gateway.mqtt.settings import OutboxSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPRESSION_LEVEL = 6
AGE_DROP_CHUNK = 512  # rows deleted per step while enforcing the age cap
SIZE_DROP_CHUNK = 16  # rows deleted per step while enforcing the size cap (then measured again)
JOURNAL_SIZE_LIMIT = 64 * 1024**2
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    samples INTEGER NOT NULL,
    payload BLOB NOT NULL,
    topic TEXT NOT NULL DEFAULT 'telemetry'
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped_messages', 0), ('dropped_samples', 0), ('dropped_up_to', 0);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored message, decompressed, as the publisher sends it, and the topic it goes out on
    (below ``<prefix>/<station>/``)."""

    seq: int
    payload: bytes
    topic: str = "telemetry"


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What the outbox holds and has dropped (status message, logs, benchmark)."""

    last_seq: int
    pending_messages: int
    pending_samples: int
    used_bytes: int
    dropped_messages: int
    dropped_samples: int
    oldest_created: float | None = None  # when the oldest pending message was stored


@dataclass(frozen=True, slots=True)
class Replay:
    """What the outbox still has of a requested range ``first..last``, and what became of the rest.

    The cap drops the oldest first, so the numbers it dropped in a range are the part at or below
    the highest number it ever dropped; the other absent numbers were deleted when confirmed.
    """

    first: int
    last: int
    entries: list[Entry]
    dropped: tuple[int, int] | None

    @property
    def absent(self) -> int:
        dropped = 0 if self.dropped is None else self.dropped[1] - self.dropped[0] + 1
        return max(0, self.last - self.first + 1 - len(self.entries) - dropped)  # 0 if the wall clock stepped back


@dataclass(slots=True)
class Dropped:
    """What one append's cap enforcement deleted: every topic shares the cap, so control state and
    alarm and event transitions can go too, and the log says which."""

    messages: int = 0
    samples: int = 0
    last: int = 0
    topics: dict[str, int] = field(default_factory=dict)

    def add(self, samples: int, topic: str) -> None:
        self.messages += 1
        self.samples += samples
        self.topics[topic] = self.topics.get(topic, 0) + 1


class Outbox:
    """SQLite-backed queue of the station's durable messages with per-station sequence numbers."""

    def __init__(self, path: Path, settings: OutboxSettings, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._settings = settings
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions only
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={settings.durability.upper()}")
        self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "topic" not in columns:  # an outbox written before alarms existed held telemetry only
            self._db.execute("ALTER TABLE outbox ADD COLUMN topic TEXT NOT NULL DEFAULT 'telemetry'")
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self.last_seq: int = row[0] if row else 0
        self._page_size: int = self._db.execute("PRAGMA page_size").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def append(self, encode: Callable[[int], bytes], samples: int, topic: str = "telemetry") -> int:
        """Store one message under the next sequence number and return that number.

        ``encode(seq)`` builds the payload, which carries its own sequence number; ``topic`` is
        where it is published, below ``<prefix>/<station>/``. When this returns, the message is
        committed (and synced, with ``durability: full``).
        """
        seq = self.last_seq + 1
        payload = zlib.compress(encode(seq), COMPRESSION_LEVEL)
        now = self._clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT INTO outbox (seq, created, samples, payload, topic) VALUES (?, ?, ?, ?, ?)",
                             (seq, now, samples, payload, topic))
            dropped = self._enforce_cap(seq, now)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.last_seq = seq
        if dropped.messages:
            total = self._counters()
            # Every topic shares the cap: say which kinds were lost, not only telemetry.
            log.warning("outbox full: dropped the oldest messages", extra=kv(
                messages=dropped.messages, samples=dropped.samples, up_to_seq=dropped.last,
                topics=",".join(f"{topic}:{count}" for topic, count in sorted(dropped.topics.items())),
                dropped_messages_total=total[0], dropped_samples_total=total[1]))
        return seq

    def pending(self, after: int, limit: int) -> list[Entry]:
        """Up to ``limit`` stored messages with a sequence number above ``after``, in order."""
        rows = self._db.execute("SELECT seq, payload, topic FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after, limit)).fetchall()
        return [Entry(seq, zlib.decompress(payload), topic) for seq, payload, topic in rows]

    def confirm(self, upto: int, ranges: Iterable[tuple[int, int]] = ()) -> int:
        """Forget what the historian confirmed it holds: ``seq <= upto`` and each ``(first, last)``.

        Returns how many messages were deleted (numbers no longer stored are ignored).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,)).rowcount
            for first, last in ranges:
                deleted += self._db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return int(deleted)

    def replay(self, first: int, last: int) -> Replay:
        """The stored messages of ``first..last`` in order, and which of the others the cap dropped."""
        rows = self._db.execute("SELECT seq, payload, topic FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                (first, last)).fetchall()
        entries = [Entry(seq, zlib.decompress(payload), topic) for seq, payload, topic in rows]
        dropped_up_to = self._counters()[2]
        dropped = (first, min(last, dropped_up_to)) if first <= dropped_up_to else None
        return Replay(first, last, entries, dropped)

    def stats(self) -> OutboxStats:
        messages, samples, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(samples), 0), min(created) FROM outbox").fetchone()
        dropped_messages, dropped_samples, _ = self._counters()
        return OutboxStats(self.last_seq, messages, samples, self._used_bytes(), dropped_messages, dropped_samples,
                           oldest)

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def _counters(self) -> tuple[int, int, int]:
        """(messages dropped, samples dropped, highest number dropped), all time."""
        values = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return values["dropped_messages"], values["dropped_samples"], values["dropped_up_to"]

    def _enforce_cap(self, newest: int, now: float) -> Dropped:
        """Delete the oldest rows until both caps hold; returns what was dropped.

        Runs inside the append's transaction, so a message and the drops it caused commit together.
        The newest message is never dropped: it is what the cap makes room for.
        """
        cutoff = now - self._settings.max_age_h * 3600
        dropped = Dropped()
        while True:
            oldest = self._db.execute("SELECT seq, created FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if oldest is None or oldest[0] == newest:
                break
            if oldest[1] < cutoff:
                victims = self._db.execute(
                    "SELECT seq, samples, topic FROM outbox WHERE created < ? AND seq < ? ORDER BY seq LIMIT ?",
                    (cutoff, newest, AGE_DROP_CHUNK)).fetchall()
            elif self._used_bytes() > self._settings.max_bytes:
                victims = self._db.execute("SELECT seq, samples, topic FROM outbox WHERE seq < ? ORDER BY seq LIMIT ?",
                                           (newest, SIZE_DROP_CHUNK)).fetchall()
            else:
                break
            dropped.last = victims[-1][0]
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (dropped.last,))
            for _, samples, topic in victims:
                dropped.add(samples, topic)
        if dropped.messages:
            self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped_messages'",
                             (dropped.messages,))
            self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped_samples'",
                             (dropped.samples,))
            self._db.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'dropped_up_to'",
                             (dropped.last,))
        return dropped


class AsyncOutbox:
    """The event loop's handle on an ``Outbox`` living on its own thread."""

    def __init__(self, path: Path, settings: OutboxSettings, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._settings = settings
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._outbox: Outbox | None = None
        self._appended = asyncio.Condition()
        self.last_seq = 0
        self._calls: dict[int, float] = {}  # id of each call waiting on the thread -> when it was made
        self._call_ids = itertools.count()

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        call = next(self._call_ids)
        self._calls[call] = loop.time()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        finally:
            del self._calls[call]

    def busy_s(self, now: float) -> float:
        """How long the oldest call still waiting on the outbox thread has waited (event-loop time
        ``now``; 0 when idle). A commit takes milliseconds, so minutes mean a wedged disk."""
        return now - min(self._calls.values()) if self._calls else 0.0

    async def open(self) -> None:
        self._outbox = await self._run(Outbox, self.path, self._settings, self._clock)
        self.last_seq = self._outbox.last_seq

    async def close(self) -> None:
        if self._outbox is not None:
            await self._run(self._outbox.close)
            self._outbox = None
        self._executor.shutdown(wait=True)

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("outbox is not open")
        return self._outbox

    async def append(self, encode: Callable[[int], bytes], samples: int, topic: str = "telemetry") -> int:
        seq = await self._run(self.outbox.append, encode, samples, topic)
        self.last_seq = seq
        async with self._appended:
            self._appended.notify_all()
        return seq

    async def pending(self, after: int, limit: int) -> list[Entry]:
        return await self._run(self.outbox.pending, after, limit)

    async def confirm(self, upto: int, ranges: Iterable[tuple[int, int]] = ()) -> int:
        return await self._run(self.outbox.confirm, upto, list(ranges))

    async def replay(self, first: int, last: int) -> Replay:
        return await self._run(self.outbox.replay, first, last)

    async def stats(self) -> OutboxStats:
        return await self._run(self.outbox.stats)

    async def wait_beyond(self, seq: int) -> None:
        """Return once a message with a sequence number above ``seq`` has been stored."""
        async with self._appended:
            await self._appended.wait_for(lambda: self.last_seq > seq)
