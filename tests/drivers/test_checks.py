"""The Modbus layout checks: what they refuse is refused in the corpus (tests/data/stations); here,
what they must let through, and the host rules case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.modbus.checks import host_problem
from gateway.config import load_gateway_config

BASE = Path(__file__).resolve().parents[1] / "data" / "stations" / "base" / "station.yaml"


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.10.254", "plc-1.station.local", "localhost", "plc_1",
                                  "meter.", "::1", "fe80::1", "2001:db8::10"])
def test_addresses_and_host_names_are_taken(host: str) -> None:
    assert host_problem(host) is None


@pytest.mark.parametrize(("host", "message"), [
    ("192.168.10.300", "not an IPv4 address: Octet 300 (> 255)"),
    ("1.2.3", "not an IPv4 address: Expected 4 octets"),
    ("1.2.3.4:502", "a port does not go in host: write host: 1.2.3.4 and port: 502"),
    ("plc.local:1502", "a port does not go in host: write host: plc.local and port: 1502"),
    ("tcp://10.0.0.5:502/", "without a scheme: write host: 10.0.0.5 and port: 502"),
    ("plc 1", "not a host name or an IP address"),
    ("a..b", "not a host name or an IP address"),
    ("[::1]:502", "not a host name or an IP address"),
])
def test_a_host_that_is_none_is_refused_saying_what_to_write(host: str, message: str) -> None:
    problem = host_problem(host)
    assert problem is not None and message in problem, problem


def test_a_device_whose_map_really_uses_high_addresses_says_so_and_passes(tmp_path: Path) -> None:
    text = BASE.read_text().replace("supply_setpoint: {function: holding, address: 0,",
                                    "supply_setpoint: {function: holding, address: 40101,")
    station = tmp_path / "station.yaml"
    station.write_text(text.replace("    port: 15999\n    tags:", "    port: 15999\n    high_addresses: true\n    tags:"))
    config = load_gateway_config(station)
    assert config.devices["plc"].tags["supply_setpoint"].address == 40101


def test_devices_on_one_line_with_their_own_ids_and_one_speed_pass(tmp_path: Path) -> None:
    meters = "".join(f"  meter_{unit}:\n    protocol: modbus_rtu\n    serial_port: /dev/ttyUSB0\n    unit_id: {unit}\n"
                     f"    baudrate: 2400\n    parity: E\n    tags:\n"
                     f"      power_{unit}: {{function: holding, address: 0, type: float32, group: fast}}\n"
                     for unit in (2, 3))
    other_line = ("  meter_9:\n    protocol: modbus_rtu\n    serial_port: /dev/ttyUSB1\n    unit_id: 2\n    tags:\n"
                  "      power_9: {function: holding, address: 65534, type: float32, group: fast}\n")
    station = tmp_path / "station.yaml"
    station.write_text(BASE.read_text() + meters + other_line)
    assert sorted(load_gateway_config(station).devices) == ["meter_2", "meter_3", "meter_9", "plc"]
