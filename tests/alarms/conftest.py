"""The MQTT tests' broker and subscriber, for the alarm tests that run the whole chain."""

from tests.mqtt.conftest import broker  # noqa: F401 - a fixture used here
from tests.gateway.conftest import station_server  # noqa: F401,E402 - a fixture used here
