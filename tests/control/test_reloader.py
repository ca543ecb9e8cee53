"""SIGHUP's reloader: never raises in the signal callback, one reload at a time, none lost."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.app import Reloader
from gateway.control.task import ControllerTask
from gateway.yaml_source import ConfigError


class SlowTask:
    """Stands in for ControllerTask: each reload takes a while and is counted."""

    def __init__(self) -> None:
        self.reloads = 0
        self.running = 0
        self.most_at_once = 0

    async def reload_off_loop(self, path: Path) -> str | None:
        self.reloads += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        return None


async def test_signals_during_a_reload_ask_for_exactly_one_more_and_reloads_never_overlap() -> None:
    task = SlowTask()
    reloader = Reloader(cast(ControllerTask, task), Path("controller.yaml"))
    for _ in range(5):
        reloader()  # five SIGHUPs at once
        await asyncio.sleep(0)
    await asyncio.sleep(0.3)
    assert task.reloads == 2, "the first reload, then one for all the signals that came during it"
    assert task.most_at_once == 1
    reloader()
    await asyncio.sleep(0.2)
    assert task.reloads == 3
    await reloader.close()


async def test_sighup_without_a_controller_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.app")
    reloader = Reloader(None, None)
    reloader()
    assert "nothing to reload" in caplog.text
    await reloader.close()


def test_the_reload_reads_on_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[Any] = []

    def load(self: ControllerTask, path: Path) -> Any:
        threads.append(threading.current_thread())
        raise ConfigError([f"{path}:1:1: x: refused"])

    monkeypatch.setattr(ControllerTask, "load_for_reload", load)
    task = ControllerTask.__new__(ControllerTask)
    reason = asyncio.run(task.reload_off_loop(Path("c.yaml")))
    assert reason == "c.yaml:1:1: x: refused"
    assert threads and threads[0] is not threading.main_thread()
