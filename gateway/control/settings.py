"""The ``controller:`` section of the station configuration."""

from __future__ import annotations

from gateway.config_base import Strict


class ControllerSettings(Strict):
    """Circuits, curves, comfort schedule, limits (filled in by the controller issue)."""
