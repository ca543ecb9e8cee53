"""Modbus mistakes a station file can make that no single field shows, found before anything connects.

Each is a real commissioning trap: the same unit id twice on one RS-485 line (two meters answer at
once and both read garbage), devices on one serial port at different speeds (the port runs at one:
the first device's, and the others never answer), a host that is not one (``192.168.10.300``,
``1.2.3.4:502``), a value whose registers run past the last address, and an address copied from a
manual's 4xxxx/3xxxx reference column (40101 is holding register 100).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from drivers.modbus.config import ModbusDevice, ModbusRtuDevice, ModbusTcpDevice, TagConfig, overlapping_writes
from drivers.modbus.points import DataType
from gateway.acquisition.driver import Problems

LAST_ADDRESS = 65_535
SERIAL_SETTINGS = ("baudrate", "parity", "stopbits")
NOT_A_HOST = "not a host name or an IP address (letters, digits, '-', '_' and '.' only; no scheme, path or port)"
_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
"""A host name label; ``_`` is not DNS but /etc/hosts names have it, and they resolve."""
_REFERENCES = {"discrete": (10_001, 19_999), "input": (30_001, 39_999), "holding": (40_001, 49_999)}
"""Modicon references (1-based, the table in the first digit), as manuals print them."""


def modbus_problems(devices: Mapping[str, ModbusDevice]) -> Problems:
    """Every cross-device and layout problem of the Modbus devices, at the field to change."""
    found = overlapping_writes(devices)
    found += serial_line_problems(devices)
    for name, device in devices.items():
        where = ("devices", name)
        if isinstance(device, ModbusTcpDevice) and (problem := host_problem(device.host)) is not None:
            found.append(((*where, "host"), problem))
        for tag_name, tag in device.tags.items():
            found += [((*where, "tags", tag_name, "address"), problem)
                      for problem in address_problems(tag, device.high_addresses)]
    return found


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a host name, or None.

    Numbers and dots only is an IPv4 address, and must be a valid one: ``192.168.10.300`` is a
    typo, not a host name to look up. A port belongs in ``port:``.
    """
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            return f"not an IPv4 address: {exc}"
        return None
    if "://" in host:
        name, _, port = host.split("://", 1)[1].split("/")[0].partition(":")
        return f"a host is a name or an address, without a scheme: write host: {name}" + (f" and port: {port}" if port else "")
    if ":" in host:
        name, _, port = host.rpartition(":")
        if port.isdigit() and name and ":" not in name:
            return f"a port does not go in host: write host: {name} and port: {port}"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return NOT_A_HOST
        return None
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return NOT_A_HOST
    return None


def address_problems(tag: TagConfig, high_addresses: bool = False) -> list[str]:
    """A value that runs past the last register, or an address that looks like a manual's
    4xxxx/3xxxx reference (unless the device says its map really uses such addresses)."""
    found: list[str] = []
    if tag.function in ("holding", "input") and tag.bit is None:
        width = DataType(tag.data_type).registers
        last = tag.address + width - 1
        if last > LAST_ADDRESS:
            found.append(f"a {tag.data_type} takes {width} registers: {tag.address}..{last} runs past the last "
                         f"register, {LAST_ADDRESS}")
    for function, (low, high) in _REFERENCES.items():
        if low <= tag.address <= high and not high_addresses:
            found.append(f"{tag.address} looks like a {str(low)[0]}xxxx reference: use function {function}, "
                         f"address {tag.address - low} (if the device's map really uses addresses this high, "
                         "as SunSpec maps do, set the device's high_addresses: true)")
    return found


def serial_line_problems(devices: Mapping[str, ModbusDevice]) -> Problems:
    """Devices on one serial port: each with its own unit id, all at the port's one speed and framing."""
    found: Problems = []
    first_on_port: dict[str, tuple[str, ModbusRtuDevice]] = {}
    unit_owner: dict[tuple[str, int], str] = {}
    for name, device in devices.items():
        if not isinstance(device, ModbusRtuDevice):
            continue
        where = ("devices", name)
        port = device.serial_port
        owner = unit_owner.setdefault((port, device.unit_id), name)
        if owner != name:
            found.append(((*where, "unit_id"), f"unit id {device.unit_id} is already device {owner!r} on {port}: "
                                               "two devices with one address on one line answer together"))
        first_name, first = first_on_port.setdefault(port, (name, device))
        for setting in SERIAL_SETTINGS:
            mine, theirs = getattr(device, setting), getattr(first, setting)
            if first_name != name and mine != theirs:
                found.append(((*where, setting), f"{port} runs at {setting} {theirs} for device {first_name!r}: "
                                                 "one line has one setting, give every device on it the same"))
    return found
