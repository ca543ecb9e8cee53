"""Helpers for controller tests: the shipped controller configuration, edited per test."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from gateway.control.controller import Controller
from gateway.control.loader import ControllerFile, resolve_curves
from gateway.control.settings import ControllerConfig
from gateway.control.task import ControllerTask

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
CONTROLLER_YAML = CONFIG_DIR / "controller.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
_SHIPPED: dict[str, Any] = yaml.safe_load(CONTROLLER_YAML.read_text())


def controller_config(edit: Callable[[dict[str, Any]], None] | None = None) -> ControllerConfig:
    """config/controller.yaml (its ``controller:`` mapping passed to ``edit``), curves loaded."""
    data = copy.deepcopy(_SHIPPED)
    if edit is not None:
        edit(data["controller"])
    return resolve_curves(ControllerFile.model_validate(data).controller, CONFIG_DIR)


def controller(edit: Callable[[dict[str, Any]], None] | None = None) -> Controller:
    return Controller(controller_config(edit), SHANGHAI)


def radiators(data: dict[str, Any]) -> dict[str, Any]:
    """The radiator circuit's mapping inside an edited controller section."""
    circuit: dict[str, Any] = data["circuits"]["radiators"]
    return circuit


def on_the_wall_clock_all_day(data: dict[str, Any]) -> None:
    """An edit for closed-loop runs on the wall clock: a cycle a second, the heating season and
    comfort hours whatever the date and hour, ramps fast enough to see two writes in seconds."""
    data["cycle_s"] = 1
    data["season"]["override"] = "heating"
    radiators(data)["comfort"].update(day_start="00:00", day_end="23:59:59")
    radiators(data).update(ramp_up_k_per_h=600, ramp_down_k_per_h=600)


async def written_setpoints(task: ControllerTask, count: int = 2, timeout_s: float = 40.0) -> list[float]:
    """The distinct setpoints the controller wrote, as its state reports them, until ``count`` of
    them (or ``timeout_s``)."""
    written: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(written) < count and loop.time() < deadline:
        await asyncio.sleep(0.5)
        state = task.state
        if state is not None and state.circuits[0].written_c is not None:
            value = state.circuits[0].written_c
            if not written or written[-1] != value:
                written.append(value)
    return written
