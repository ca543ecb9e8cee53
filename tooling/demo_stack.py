"""The dispatch side of the demo: a private broker, time-series database and historian bridge.

All three run as child processes on loopback, in a throw-away directory, so the demo never
touches a system broker or database and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tooling.devstack import Mosquitto, VictoriaMetrics, die_with_parent, stop_process


@dataclass
class DispatchSide:
    """Handles on the running broker, database and bridge."""

    broker: Mosquitto
    database: VictoriaMetrics
    bridge: subprocess.Popen[bytes]

    async def stored_points(self) -> int | None:
        """Telemetry points the historian has written so far (None if the database does not say)."""
        return await asyncio.to_thread(self._count, "sum(count_over_time(telemetry_value[1d]))", None)

    async def stored_states(self, since: float, until: float) -> int | None:
        """Controller states the historian has written with times from ``since`` to ``until``.

        They carry the controller's time, which in the demo is the simulation's, not the wall
        clock's: the query looks back from ``until`` rather than from now.
        """
        window = max(1, math.ceil(until - since))
        return await asyncio.to_thread(self._count, f"sum(count_over_time(control_outdoor_c[{window}s]))", until)

    def _count(self, query: str, at: float | None) -> int | None:
        parameters = {"query": query} | ({} if at is None else {"time": f"{at:.3f}"})
        try:
            with urllib.request.urlopen(f"{self.database.url}/api/v1/query?{urllib.parse.urlencode(parameters)}",
                                        timeout=2) as reply:
                result = json.loads(reply.read())["data"]["result"]
        except (OSError, ValueError, KeyError):
            return None
        return int(float(result[0]["value"][1])) if result else 0


@contextlib.contextmanager
def dispatch_side(workdir: Path, mqtt_port: int, tsdb_port: int) -> Iterator[DispatchSide]:
    """Start broker, database and bridge in ``workdir``; stop all three when the block ends."""
    # As root, mosquitto would drop to its own user, which cannot read a private temp directory.
    broker = Mosquitto(workdir / "mosquitto", ["allow_anonymous true", *(["user root"] if os.geteuid() == 0 else [])],
                       port=mqtt_port)
    database = VictoriaMetrics(workdir / "victoria-metrics", port=tsdb_port,
                               extra_args=["-dedup.minScrapeInterval=1ms"])
    bridge: subprocess.Popen[bytes] | None = None
    try:
        broker.start()
        database.start()
        config = _historian_config(workdir / "historian", mqtt_port, database.url)
        log = (workdir / "historian" / "bridge.log").open("ab")
        bridge = subprocess.Popen([sys.executable, "-m", "gateway", "historian", "run", "--config", str(config)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  preexec_fn=die_with_parent, start_new_session=True)
        yield DispatchSide(broker, database, bridge)
    finally:
        stop_process(bridge)
        database.stop()
        broker.stop()


def _historian_config(directory: Path, mqtt_port: int, database_url: str) -> Path:
    """A historian.yaml for the local stack (the demo database ignores the token)."""
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / "token"
    token.write_text("demo\n")
    config = directory / "historian.yaml"
    config.write_text(yaml.safe_dump({
        "instance": "demo",
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "influxdb": {"url": database_url, "token_file": str(token), "org": "demo", "bucket": "demo"},
        "state_dir": str(directory / "state"),
    }))
    return config

