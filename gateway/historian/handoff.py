"""What the bridge's threads hand each other, named in one place.

The bridge runs three threads (``bridge``): the durable MQTT session (``session.DurableSession``),
the metadata client's paho loop (``session.MetaSession``) and the database worker
(``worker.Worker``). Each owns its own state; this is the only state they share, and every field
says which thread writes it and which reads it. Deque appends and pops, ``SimpleQueue`` and
``Event`` are thread-safe, and each counter has one writer, so no lock is needed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.historian.schema import StationMeta
from gateway.mqtt.payloads import ReplayAnswer


@dataclass(slots=True)
class Incoming:
    """A received message, as the network thread hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # the durable connection it came on: its acknowledgement is valid on that one only


Ack = tuple[int, int, int]
"""(connection generation, packet id, QoS) of a message to acknowledge."""


@dataclass(slots=True, eq=False)
class Handoff:
    """The bridge's shared state; see each field for its writer and readers."""

    # network -> worker
    inbox: deque[Incoming] = field(default_factory=deque)
    received: int = 0  # written by the network thread: messages put into ``inbox`` since start
    # network, metadata -> worker: something to do (a message, a meta, a report, an answer, closing)
    arrived: threading.Event = field(default_factory=threading.Event)
    # worker -> network
    acks: deque[list[Ack]] = field(default_factory=deque)  # written batches' messages, acknowledged in order
    released: int = 0  # written by the worker: messages written (or refused) and handed back for acks
    room: threading.Event = field(default_factory=threading.Event)  # pending fell: reading may go on
    # metadata -> worker
    metas: dict[str, StationMeta] = field(default_factory=dict)  # each station's retained meta (replaced whole)
    peer_reports: queue.SimpleQueue[tuple[str, int, int]] = field(default_factory=queue.SimpleQueue)
    answers: queue.SimpleQueue[tuple[str, ReplayAnswer | str]] = field(default_factory=queue.SimpleQueue)
    # lifecycle: set by the bridge (closing, abandon) or the worker (worker_done, failed, closing on failure)
    closing: threading.Event = field(default_factory=threading.Event)  # stop reading, write what is held
    abandon: threading.Event = field(default_factory=threading.Event)  # stop retrying writes: shutdown ran out
    worker_done: threading.Event = field(default_factory=threading.Event)
    failed: threading.Event = field(default_factory=threading.Event)
    # each thread writes its own key, the watchdog reads: the monotonic time of its last step
    progress: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("network", "worker"), time.monotonic()))

    @property
    def pending(self) -> int:
        """Messages received and not yet written and acknowledged: what reading is paused on."""
        return self.received - self.released
