"""MQTT outbox benchmark: live publish rate from the Modbus path, replay of a 1-million-value backlog,
disk bytes per buffered value (not run in CI).

Run: ``.venv/bin/python bench/outbox.py`` (both parts), or ``--part live`` / ``--part replay``.

* **live**: the gateway, exactly as in production (``Gateway`` with an ``mqtt`` section), polls
  100 simulated devices x 100 tags every second (bench/poll.py's device server, a child process)
  and sends everything through the outbox to a private Mosquitto. ``integrity_interval_s`` is set
  below the poll interval, so report by exception lets EVERY value through: the worst case, where
  every value changes every second. The CPU figure is this process's (the gateway's) alone: the
  device server, the broker and the counting subscriber are other processes.
* **replay**: a 500-tag station's worth of messages (500 samples each, every value moving, long
  realistic tag names) is stored in an outbox until it holds ``--values`` values, which gives the
  disk bytes per value; then a publisher connects and replays it all. The rate is counted at the
  subscriber: values received in order, without a gap, per second.
* The subscriber is a child process (this script with ``--subscribe``) that checks every sequence
  number arrives in order, prints its counts as JSON lines, and confirms what it received with the
  retained ``delivered`` every 0.25 s, as a historian bridge does: the outbox deletes on that
  confirmation, not on the PUBACK, so the benchmark pays for both.

Figures print live once a second; the summary is a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from poll import Figure, gateway_config, machine, render, running, server_process

from gateway.app import Gateway
from gateway.bus import Subscription
from gateway.config import GatewayConfig
from tooling.devstack import Mosquitto
from gateway.mqtt.commands import CommandRegistry
from gateway.mqtt.outbox import AsyncOutbox, Outbox
from gateway.mqtt.payloads import DELIVERED_TOPIC, Delivered, StationIdentity, TelemetryEncoder, delivered
from gateway.tag_traits import TagTraits
from gateway.mqtt.publisher import Publisher
from gateway.mqtt.settings import MqttSettings, OutboxSettings
from gateway.samples import Sample

TARGET_CPU_PCT = 25.0  # whole gateway process, of one core, at 10,000 values/s
TARGET_REPLAY_VALUES_S = 20_000.0
TARGET_BYTES_PER_VALUE = 40.0
OUTAGE_H, OUTAGE_TAGS = 72, 500  # the cap must hold this outage at 1 s
STATION_TAGS = 500
REPORT_EVERY_S = 1.0
WAIT_S = 300.0
TOPIC = "heatgw/bench/telemetry"


# --- the counting subscriber (child process) ------------------------------------------------------


def subscribe(port: int, topic: str) -> None:
    """``--subscribe``: count telemetry, check the order, print the counts every 0.25 s until stdin
    closes, and confirm what it received as a historian does (the retained ``delivered``, at the
    same pace), so the outbox is freed as in production. paho's loop thread counts; the main thread
    prints and confirms."""
    counts = {"messages": 0, "values": 0, "max_seq": 0, "gaps": 0, "duplicates": 0}

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        data = json.loads(message.payload)
        seq = data["seq"]
        if seq <= counts["max_seq"]:
            counts["duplicates"] += 1
            return
        if counts["max_seq"] and seq != counts["max_seq"] + 1:
            counts["gaps"] += 1
        counts["max_seq"] = seq
        counts["messages"] += 1
        counts["values"] += len(data["s"])

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    print(json.dumps({"ready": True}), flush=True)
    stdin_closed = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stdin_closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    confirmations = topic.rsplit("/", 1)[0] + "/" + DELIVERED_TOPIC
    while not stdin_closed.wait(0.25):
        print(json.dumps(counts), flush=True)
        client.publish(confirmations, delivered(Delivered(counts["max_seq"]), time.time()), qos=1, retain=True)
    client.loop_stop()


class SubscriberProcess:
    """The parent's handle on the counting subscriber."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.counts: dict[str, Any] = {"messages": 0, "values": 0, "max_seq": 0, "gaps": 0, "duplicates": 0}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.counts = json.loads(line)

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def subscriber_process(port: int, topic: str) -> AsyncIterator[SubscriberProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, os.path.abspath(__file__), "--subscribe", str(port), "--topic", topic,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), 15)
    if b"ready" not in ready:
        raise RuntimeError(f"subscriber did not start (said {ready!r})")
    handle = SubscriberProcess(process)
    try:
        await asyncio.sleep(0.3)  # SUBACK
        yield handle
    finally:
        await handle.close()


@contextlib.contextmanager
def broker(directory: Path) -> Any:
    service = Mosquitto(directory, extra_config=["allow_anonymous true", "max_queued_messages 0",
                                                 *(["user root"] if os.geteuid() == 0 else [])])
    service.start()
    try:
        yield service
    finally:
        service.stop()


# --- live: Modbus -> outbox -> broker --------------------------------------------------------------


@dataclass
class LiveRun:
    seconds: float
    cpu_s: float
    polled: int
    stored: int = 0
    published_messages: int = 0
    received_values: int = 0
    gaps: int = 0
    backlog_end: int = 0
    unconfirmed_end: int = 0


def _counters(gateway: Gateway, sub: SubscriberProcess, polled: int) -> tuple[int, int, int, int]:
    if gateway.mqtt is None:
        return polled, 0, 0, 0
    return polled, gateway.mqtt.batcher.samples_out, gateway.mqtt.publisher.published_messages, sub.counts["values"]


async def live(args: argparse.Namespace, workdir: Path, *, with_mqtt: bool) -> LiveRun:
    """One window of the Modbus path at D x M values/s, with or without the MQTT side."""
    with broker(workdir / "mosquitto-live") as service:
        async with server_process(args.tags) as server, subscriber_process(service.port, TOPIC) as sub:
            data = gateway_config(args.devices, args.tags, 1.0, server.port)
            if with_mqtt:
                data["mqtt"] = {"host": "127.0.0.1", "port": service.port, "integrity_interval_s": 0.5}
            gateway = Gateway(GatewayConfig.model_validate(data), state_dir=workdir / "state-live")
            pollers = list(gateway.devices.values())
            drain = gateway.bus.subscribe("bench", lossless=False)  # what the live view would be
            drainer = asyncio.create_task(_drain(drain))
            me = psutil.Process()
            async with running(gateway):
                await asyncio.sleep(args.warmup)
                start_cpu, start_t = sum(me.cpu_times()[:2]), time.perf_counter()
                start = last = _counters(gateway, sub, sum(p.stats.values for p in pollers))
                last_t = start_t
                while (now := time.perf_counter()) - start_t < args.seconds:
                    await asyncio.sleep(REPORT_EVERY_S)
                    now = time.perf_counter()
                    counts = _counters(gateway, sub, sum(p.stats.values for p in pollers))
                    rates = [(new - old) / (now - last_t) for new, old in zip(counts, last, strict=True)]
                    cpu = 100 * (sum(me.cpu_times()[:2]) - start_cpu) / (now - start_t)
                    line = f"  t={now - start_t:5.1f}s  polled {rates[0]:8,.0f} values/s"
                    if gateway.mqtt is not None:
                        line += (f"  stored {rates[1]:8,.0f} values/s  published {rates[2]:5.1f} msg/s  "
                                 f"received {rates[3]:8,.0f} values/s  "
                                 f"backlog {gateway.mqtt.outbox.last_seq - sub.counts['max_seq']:3d} msg")
                    print(f"{line}  gateway CPU {cpu:5.1f} %", flush=True)
                    last, last_t = counts, now
                cpu_s = sum(me.cpu_times()[:2]) - start_cpu
                end = _counters(gateway, sub, sum(p.stats.values for p in pollers))
                backlog = gateway.mqtt.outbox.last_seq - sub.counts["max_seq"] if gateway.mqtt else 0
                unconfirmed = (await gateway.mqtt.outbox.stats()).pending_messages if gateway.mqtt else 0
                gaps = sub.counts["gaps"]
            drainer.cancel()
    polled, stored, published, received = (new - old for new, old in zip(end, start, strict=True))
    return LiveRun(now - start_t, cpu_s, polled, stored, published, received, gaps, backlog, unconfirmed)


async def _drain(subscription: Subscription) -> None:
    async for _ in subscription:
        pass


# --- replay: a stored backlog through a publisher -----------------------------------------------------


def station_tags() -> list[tuple[str, int]]:
    """500 tags with realistic names and resolutions (decimals), as a large station has."""
    kinds = [("supply_temp", 1), ("return_temp", 1), ("supply_pressure", 3), ("return_pressure", 3),
             ("flow", 1), ("valve_position", 1), ("pump_frequency", 1), ("energy_kwh", 0), ("power_kw", 1),
             ("room_temp", 1)]
    return [(f"building_{i // 10:02d}_{kinds[i % 10][0]}", kinds[i % 10][1]) for i in range(STATION_TAGS)]


def encode(encoder: TelemetryEncoder, samples: list[Sample], seq: int) -> bytes:
    return encoder.encode(seq, samples)


@dataclass
class Fill:
    values: int
    messages: int
    seconds: float
    used_bytes: int
    file_bytes: int


def fill(path: Path, values: int) -> Fill:
    """Store ``values`` values as the batcher would: one 500-sample message per simulated second,
    every value moving (a random walk at its tag's resolution)."""
    rng = random.Random(1)
    tags = station_tags()
    encoder = TelemetryEncoder({tag: TagTraits(digits=digits) for tag, digits in tags})
    level = {tag: rng.uniform(0, 100) for tag, _ in tags}
    outbox = Outbox(path, OutboxSettings())
    t0, stored, messages = time.time() - values / STATION_TAGS, 0, 0
    started = time.perf_counter()
    while stored < values:
        samples = []
        for tag, _ in tags[: min(STATION_TAGS, values - stored)]:
            level[tag] += rng.gauss(0, 0.5)
            samples.append(Sample(tag, level[tag], t0 + messages + rng.random() * 0.3))
        outbox.append(functools.partial(encode, encoder, samples), len(samples))
        stored += len(samples)
        messages += 1
    seconds = time.perf_counter() - started
    used = outbox.stats().used_bytes
    outbox.close()
    files = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return Fill(stored, messages, seconds, used, files)


@dataclass
class ReplayRun:
    values: int
    messages: int
    seconds: float
    drained_s: float
    gaps: int
    duplicates: int
    cpu_s: float


async def replay(path: Path, expected: Fill, workdir: Path) -> ReplayRun:
    settings = MqttSettings(host="127.0.0.1")
    with broker(workdir / "mosquitto-replay") as service:
        settings = settings.model_copy(update={"port": service.port})
        async with subscriber_process(service.port, TOPIC) as sub:
            outbox = AsyncOutbox(path, OutboxSettings())
            await outbox.open()
            publisher = Publisher(settings, StationIdentity("bench", "bench", "sha256:-", time.time()), outbox,
                                  CommandRegistry(), lambda: b"{}")
            me = psutil.Process()
            start_cpu, started = sum(me.cpu_times()[:2]), time.perf_counter()
            task = asyncio.create_task(publisher.run())
            drained_s = 0.0
            last_t, last_values = started, 0
            try:
                deadline = started + WAIT_S
                while sub.counts["values"] < expected.values and time.perf_counter() < deadline:
                    await asyncio.sleep(REPORT_EVERY_S / 4)
                    if not drained_s and (await outbox.stats()).pending_messages == 0:
                        drained_s = time.perf_counter() - started
                    now = time.perf_counter()
                    if now - last_t >= REPORT_EVERY_S:
                        received = sub.counts["values"]
                        print(f"  replay t={now - started:5.1f}s  received {received:10,} values "
                              f"({(received - last_values) / (now - last_t):9,.0f} values/s, "
                              f"seq {sub.counts['max_seq']:,}/{expected.messages:,})", flush=True)
                        last_t, last_values = now, received
                seconds = time.perf_counter() - started
                cpu = sum(me.cpu_times()[:2]) - start_cpu
                # The outbox empties on the subscriber's confirmation, which follows the last message.
                while not drained_s and time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
                    if (await outbox.stats()).pending_messages == 0:
                        drained_s = time.perf_counter() - started
            finally:
                publisher.stop()
                await asyncio.wait_for(task, 15)
                await outbox.close()
            counts = sub.counts
    return ReplayRun(counts["values"], counts["messages"], seconds, drained_s, counts["gaps"], counts["duplicates"],
                     cpu)


def mosquitto_version() -> str:
    from tooling.devstack import MOSQUITTO

    banner = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=10).stdout
    return banner.split("version", 1)[1].split()[0] if "version" in banner else "?"


# --- report -----------------------------------------------------------------------------------------


def live_figures(base: LiveRun, run: LiveRun, args: argparse.Namespace) -> list[Figure]:
    expected = args.devices * args.tags
    cpu_pct, base_pct = 100 * run.cpu_s / run.seconds, 100 * base.cpu_s / base.seconds
    return [
        Figure("values polled / s (Modbus path)", f"{run.polled / run.seconds:,.0f}", f"~{expected:,}",
               run.polled / run.seconds >= 0.99 * expected),
        Figure("values stored in the outbox / s", f"{run.stored / run.seconds:,.0f}", "= polled (every value passes)",
               run.stored >= 0.99 * run.polled),
        Figure("telemetry messages PUBACKed / s", f"{run.published_messages / run.seconds:,.1f}"),
        Figure("values received by the subscriber / s", f"{run.received_values / run.seconds:,.0f}"),
        Figure("sequence gaps at the subscriber", str(run.gaps), "0", run.gaps == 0),
        Figure("backlog at the end of the window", f"{run.backlog_end} messages", "<= 2 (keeps up)",
               run.backlog_end <= 2),
        Figure("stored at the end, awaiting the subscriber's confirmation", f"{run.unconfirmed_end} messages",
               "<= 5 (freed as confirmed)", run.unconfirmed_end <= 5),
        Figure("gateway process CPU, % of one core", f"{cpu_pct:.1f} %", f"< {TARGET_CPU_PCT:.0f} %",
               cpu_pct < TARGET_CPU_PCT),
        Figure("same gateway without mqtt (polling only), % of one core", f"{base_pct:.1f} %"),
    ]


def replay_figures(filled: Fill, run: ReplayRun) -> list[Figure]:
    per_value = filled.used_bytes / filled.values
    outage_values = OUTAGE_H * 3600 * OUTAGE_TAGS
    cap = OutboxSettings().max_bytes
    rate = run.values / run.seconds
    return [
        Figure("backlog stored (500-sample messages)", f"{filled.values:,} values in {filled.messages:,} messages, "
               f"{filled.values / filled.seconds:,.0f} values/s"),
        Figure("disk per buffered value (pages in use)", f"{per_value:.1f} bytes", f"< {TARGET_BYTES_PER_VALUE:.0f}",
               per_value < TARGET_BYTES_PER_VALUE),
        Figure("disk per buffered value (database + WAL files)", f"{filled.file_bytes / filled.values:.1f} bytes"),
        Figure(f"{OUTAGE_H} h outage, {OUTAGE_TAGS} tags at 1 s, all changing",
               f"{outage_values / 1e6:,.1f} M values = {outage_values * per_value / 2**30:.2f} GiB",
               f"<= default cap {cap / 2**30:.0f} GiB", outage_values * per_value <= cap),
        Figure("replay rate (received in order at the subscriber)", f"{rate:,.0f} values/s",
               f">= {TARGET_REPLAY_VALUES_S:,.0f}", rate >= TARGET_REPLAY_VALUES_S and run.values == filled.values),
        Figure("replay: outbox empty after / all received after", f"{run.drained_s:.1f} s / {run.seconds:.1f} s"),
        Figure("replay: gaps / duplicates", f"{run.gaps} / {run.duplicates}", "0 gaps", run.gaps == 0),
        Figure("replay: gateway-side CPU, % of one core", f"{100 * run.cpu_s / run.seconds:.0f} %"),
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("live", "replay", "both"), default="both")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="live measurement window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--values", type=int, default=1_000_000, help="replay backlog size")
    parser.add_argument("--subscribe", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--topic", default=TOPIC, help=argparse.SUPPRESS)
    return parser.parse_args()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="heatgw-bench-") as tmp:
        workdir = Path(tmp)
        rows: list[Figure] = []
        if args.part in ("live", "both"):
            print(f"live: {args.devices} devices x {args.tags} tags every 1 s (warm-up {args.warmup:g} s, "
                  f"window {args.seconds:g} s); first polling only, then every value published", flush=True)
            base = await live(args, workdir, with_mqtt=False)
            rows += live_figures(base, await live(args, workdir, with_mqtt=True), args)
        if args.part in ("replay", "both"):
            path = workdir / "outbox-replay.sqlite"
            print(f"replay: storing {args.values:,} values ...", flush=True)
            filled = fill(path, args.values)
            rows += replay_figures(filled, await replay(path, filled, workdir))
    print()
    print(render(rows))


def main() -> None:
    args = parse_args()
    if args.subscribe is not None:
        subscribe(args.subscribe, args.topic)
        return
    print("## MQTT outbox and publisher\n")
    print(f"- command: `{shlex.join(['.venv/bin/python', 'bench/outbox.py', *sys.argv[1:]])}`")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"- machine: {machine()}; Mosquitto {mosquitto_version()} on loopback\n", flush=True)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
