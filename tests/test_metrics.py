"""The Prometheus endpoints: what they expose follows what the gateway does, and a real
Prometheus scrapes the gateway and the historian bridge.

The first test reads the gateway's endpoint itself while the simulator's meter goes silent; the
second starts Debian's Prometheus on loopback, scraping the unit's own ``ExecStart`` of the
installed configuration and a historian bridge writing to VictoriaMetrics, and asks its query API
for the series a dispatch centre would alert on.
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from tooling.devstack import Mosquitto, Prometheus, free_port, stop_process
from sim.modbus_server import CommFaults, StationModbusServer
from tests.gateway.conftest import station_config, station_server  # noqa: F401 - a fixture used here
from tests.historian.conftest import BridgeProcess, bridge_on, bridges, tsdb  # noqa: F401 - fixtures
from tests.mqtt.conftest import broker, until  # noqa: F401 - broker is a fixture
from tests.test_deployment import install_config, unit_command

METER_UNIT = 2


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_a_silent_device_shows_as_down_with_its_errors_counted_by_reason(
        station_server: StationModbusServer) -> None:  # noqa: F811
    port = free_port()

    def edit(data: dict[str, Any]) -> None:
        data["metrics"] = {"port": port}
        data["groups"] = {name: {"interval_s": 0.1} for name in data["groups"]}
        for device in data["devices"].values():
            device.update(timeout_s=0.2, retries=0, backoff={"initial_s": 0.1, "max_s": 0.3})

    async with Gateway(station_config(station_server.port, edit)) as gateway:
        await until(lambda: all(p.online for p in gateway.devices.values()), 10, "both devices online")
        before = await asyncio.to_thread(scrape, port)
        assert before[("heatgw_device_up", (("device", "heat_meter"),))] == 1.0
        assert before[("heatgw_device_requests_total", (("device", "plc"),))] > 0
        assert before[("heatgw_device_request_duration_seconds_count", (("device", "plc"),))] > 0

        station_server.set_comm_faults(METER_UNIT, CommFaults(offline=True))
        await until(lambda: gateway.devices["heat_meter"].online is False, 10, "the meter lost")
        await asyncio.sleep(0.5)  # a few more attempts
        after = await asyncio.to_thread(scrape, port)
    assert after[("heatgw_device_up", (("device", "heat_meter"),))] == 0.0
    assert after[("heatgw_device_up", (("device", "plc"),))] == 1.0, "one device's loss is its own"
    timeouts = after.get(("heatgw_device_errors_total", (("device", "heat_meter"), ("reason", "timeout"))), 0.0)
    lost = after.get(("heatgw_device_errors_total", (("device", "heat_meter"), ("reason", "connection_lost"))), 0.0)
    assert timeouts >= 1 and timeouts + lost >= 2, after
    assert ("heatgw_device_errors_total", (("device", "plc"), ("reason", "timeout"))) not in after


async def test_a_real_prometheus_scrapes_the_gateway_and_the_historian_bridge(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto,  # noqa: F811
        bridges: Callable[..., BridgeProcess]) -> None:  # noqa: F811
    etc, state, journal = tmp_path / "etc" / "heatgw", tmp_path / "state", tmp_path / "journal.log"
    install_config(etc)
    metrics_port = free_port()
    station = etc / "station.yaml"
    station.write_text(station.read_text().replace("port: 5020", f"port: {station_server.port}")
                       .replace("port: 1883", f"port: {broker.port}") + f"\nmetrics:\n  port: {metrics_port}\n")
    bridge_port = free_port()
    bridge = bridges(metrics={"port": bridge_port})
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{metrics_port}", f"127.0.0.1:{bridge_port}"])
    process: subprocess.Popen[bytes] | None = None
    with journal.open("ab") as stream:
        try:
            bridge.start()
            process = subprocess.Popen(unit_command("ExecStart", etc, state), stdout=stream, stderr=stream, cwd=tmp_path)
            prometheus.start()
            expected = {
                'heatgw_device_up{device="plc"}': 1.0,
                'heatgw_device_up{device="heat_meter"}': 1.0,
                "heatgw_mqtt_connected": 1.0,
                'heatgw_controller_outdoor_source{source="sensor"}': 1.0,
            }
            present = ["heatgw_device_requests_total", "heatgw_device_request_duration_seconds_bucket",
                       "heatgw_outbox_pending_messages", "heatgw_outbox_last_seq", "heatgw_mqtt_connections_total",
                       'heatgw_controller_setpoint_celsius{circuit="radiators"}',
                       "heatgw_historian_written_values_total > 0", "heatgw_historian_write_duration_seconds_count > 0",
                       'heatgw_historian_contiguous_seq{station="demo-01"} > 0',
                       'heatgw_historian_missing_messages_total{station="demo-01"} == 0',
                       "heatgw_historian_database_up == 1"]

            def scraped() -> bool:
                return all(_value(prometheus, query) == value for query, value in expected.items()) and all(
                    prometheus.query(query) for query in present) and (_value(prometheus, "heatgw_outbox_last_seq") or 0) >= 1

            await until(scraped, 60, "the key series in Prometheus, and telemetry stored in the outbox")
        finally:
            stop_process(process)
            prometheus.stop()
            bridge.stop()


def _value(prometheus: Prometheus, query: str) -> float | None:
    result = prometheus.query(query)
    return float(result[0]["value"][1]) if len(result) == 1 else None  # type: ignore[index]
