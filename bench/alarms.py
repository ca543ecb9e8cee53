"""Alarm engine benchmark: evaluation cost at a big station (not run in CI).

Run: ``.venv/bin/python bench/alarms.py`` (defaults: 10,000 tags every second, 2,000 alarms,
60 simulated seconds, 5 runs; the median is reported).

The engine is driven exactly as the gateway's ``AlarmService`` drives it: one ``on_item`` per
sample batch (100 devices x 100 tags, one batch each per second) and one ``tick`` per second, on
a simulated clock so the figure is CPU, not sleeping. The alarms are a station's mix: 1,000
high/low limits with deadband and on-delay, 500 discrete, 300 deviations from a reference tag,
200 quality alarms, on 2,000 distinct tags of the 10,000; the other 8,000 tags are watched by
nobody and must cost almost nothing. Values move as noisy random walks, so a few limits are
crossed and some alarms change state every second (transitions included in the cost).

CPU is ``time.process_time`` of this process over the evaluation loop only (building the batches
beforehand is not counted); the target is 2 % of one core, i.e. 20 ms of CPU per second of
station time at 10,000 samples/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.settings import AlarmSettings
from gateway.samples import Sample, SampleBatch

DEVICES = 100


def settings(tags: list[str], alarms: int) -> AlarmSettings:
    """The mix described in the module docstring, scaled to ``alarms``."""
    definitions: dict[str, dict[str, object]] = {}
    limits, discretes, deviations = alarms // 2, alarms // 4, alarms * 3 // 20
    for i in range(alarms):
        tag = tags[i * (len(tags) // alarms)]
        common = {"priority": ("critical", "high", "medium", "low")[i % 4], "message": f"alarm {i} 报警"}
        if i < limits:
            definitions[f"a{i}"] = {"kind": "threshold", "tag": tag, "level": "h" if i % 2 else "l",
                                    "limit": 60.0 if i % 2 else 40.0, "deadband": 1.0, "on_delay_s": 5, **common}
        elif i < limits + discretes:
            definitions[f"a{i}"] = {"kind": "discrete", "tag": tag, **common}
        elif i < limits + discretes + deviations:
            definitions[f"a{i}"] = {"kind": "deviation", "tag": tag, "reference": tags[(i + 1) % len(tags)],
                                    "limit": 15.0, "deadband": 1.0, "on_delay_s": 60, **common}
        else:
            definitions[f"a{i}"] = {"kind": "quality", "tag": tag, "after_s": 30, **common}
    return AlarmSettings.model_validate({"definitions": definitions})


def batches(tags: list[str], discrete: set[str], seconds: int, rng: random.Random) -> list[list[SampleBatch]]:
    """Per simulated second, one batch per device; values are random walks around 50."""
    values = {tag: 50.0 + rng.gauss(0, 3) for tag in tags}
    per_device = len(tags) // DEVICES
    out = []
    for second in range(seconds):
        now = 1_800_000_000.0 + second
        batch_list = []
        for device in range(DEVICES):
            samples = []
            for tag in tags[device * per_device:(device + 1) * per_device]:
                if tag in discrete:
                    samples.append(Sample(tag, rng.random() < 0.001, now))
                else:
                    values[tag] += rng.gauss(0, 0.5)
                    samples.append(Sample(tag, values[tag], now))
            batch_list.append(SampleBatch(f"d{device}", "fast", tuple(samples)))
        out.append(batch_list)
    return out


def run(tags: int, alarms: int, seconds: int, seed: int) -> tuple[float, int, int]:
    """CPU seconds of evaluation, samples evaluated, transitions produced."""
    rng = random.Random(seed)
    names = [f"tag_{i:05d}" for i in range(tags)]
    config = settings(names, alarms)
    discrete = {a.tag for a in config.definitions.values() if a.kind == "discrete"}  # type: ignore[union-attr]
    engine = AlarmEngine(config, {name: f"d{i // (tags // DEVICES)}" for i, name in enumerate(names)},
                         now=1_800_000_000.0)
    load = batches(names, discrete, seconds, rng)
    transitions = samples = 0
    start = time.process_time()
    for second, batch_list in enumerate(load):
        now = 1_800_000_000.0 + second
        for batch in batch_list:
            transitions += len(engine.on_item(batch, now))
            samples += len(batch.samples)
        transitions += len(engine.tick(now + 0.5))
    return time.process_time() - start, samples, transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--alarms", type=int, default=2_000)
    parser.add_argument("--seconds", type=int, default=60, help="simulated seconds per run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cpu_per_s, per_1000, counts = [], [], []
    for index in range(args.runs):
        cpu, samples, transitions = run(args.tags, args.alarms, args.seconds, seed=index)
        cpu_per_s.append(cpu / args.seconds)
        per_1000.append(cpu / samples * 1000)
        counts.append(transitions / args.seconds)
        print(f"run {index + 1}: {cpu / args.seconds * 100:.2f} % of a core, "
              f"{cpu / samples * 1e6:.3f} ms CPU per 1000 samples, {transitions / args.seconds:.1f} transitions/s",
              flush=True)
    load = os.getloadavg()
    print()
    print(f"machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average before the summary {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| tags x 1 s | alarms | CPU (median of runs) | CPU per 1000 samples | transitions/s |")
    print("|---|---|---|---|---|")
    print(f"| {args.tags:,} | {args.alarms:,} | **{statistics.median(cpu_per_s) * 100:.2f} % of one core** "
          f"(runs: {', '.join(f'{c * 100:.2f}' for c in cpu_per_s)}) | {statistics.median(per_1000) * 1000:.3f} ms "
          f"| {statistics.median(counts):.1f} |")


if __name__ == "__main__":
    main()
