"""SIGHUP's reloader: never raises in the signal callback, one reload at a time, none lost; the
files are read off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.app import Gateway
from gateway.preflight import Startup
from gateway.reload import Reloader, StationReload
from gateway.yaml_source import ConfigError


class SlowReload:
    """Stands in for a station reload: each one takes a while and is counted."""

    def __init__(self) -> None:
        self.reloads = 0
        self.running = 0
        self.most_at_once = 0

    async def __call__(self) -> None:
        self.reloads += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1


async def test_signals_during_a_reload_ask_for_exactly_one_more_and_reloads_never_overlap() -> None:
    reload = SlowReload()
    reloader = Reloader(reload)
    for _ in range(5):
        reloader()  # five SIGHUPs at once
        await asyncio.sleep(0)
    await asyncio.sleep(0.3)
    assert reload.reloads == 2, "the first reload, then one for all the signals that came during it"
    assert reload.most_at_once == 1
    reloader()
    await asyncio.sleep(0.2)
    assert reload.reloads == 3
    await reloader.close()


def test_the_reload_reads_on_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[Any] = []

    def load(path: Path, *_: object) -> Startup:
        threads.append(threading.current_thread())
        raise ConfigError([f"{path}:1:1: x: refused"])

    monkeypatch.setattr("gateway.reload.load_startup", load)
    reload = StationReload(cast(Gateway, None), Path("s.yaml"), None, None, cast(Startup, None))
    reason = asyncio.run(reload())
    assert reason == "s.yaml:1:1: x: refused"
    assert threads and threads[0] is not threading.main_thread()
