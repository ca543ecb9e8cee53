"""Helpers for controller tests: the shipped controller configuration, edited per test."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from gateway.control.controller import Controller
from gateway.control.loader import ControllerConfig, ControllerFile, resolve_curves

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
