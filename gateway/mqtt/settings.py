"""The ``mqtt:`` section of the station configuration."""

from __future__ import annotations

from gateway.config_base import Strict


class MqttSettings(Strict):
    """Broker connection, topics and store-and-forward policy (filled in by the MQTT issue)."""
