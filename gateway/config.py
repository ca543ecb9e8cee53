"""The station configuration: typed, validated models of ``station.yaml``.

Everything the gateway does at a station is driven by this file, so it is strict: unknown keys are
errors (a misspelt ``writeable:`` must not silently make a tag read-only), values are range-checked,
and cross-references (groups, tag names) are checked before anything runs. The field names are the
configuration reference printed in README.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StringConstraints, field_validator, model_validator

from drivers.modbus.codec import engineering_range
from drivers.modbus.points import DataType
from gateway.alarms.settings import AlarmSettings, EventSettings
from gateway.config_base import Backoff, MetricsSettings, Strict, StrictTagged, plain_fields
from gateway.control.settings import ControllerSettings
from gateway.mqtt.settings import MqttSettings
from gateway.report.settings import ReportSettings
from gateway.validation import validate_document
from gateway.yaml_source import ConfigError, Path_, YamlDocument, load_yaml

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
"""Names of devices, tags and groups: lower-case identifiers, because they become MQTT topic
levels and historian tags, where spaces and case differences cause trouble."""

FunctionName = Literal["holding", "input", "coil", "discrete"]
TypeName = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool", "bcd16", "bcd32"]
Order = Literal["big", "little"]

REGISTER_FUNCTIONS = ("holding", "input")
BIT_FUNCTIONS = ("coil", "discrete")
WRITABLE_FUNCTIONS = ("holding", "coil")


class StationInfo(Strict):
    """Who this station is; ``id`` is used in MQTT topics and historian tags."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    name: str
    site: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "default"
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone, use an IANA name such as Asia/Shanghai") from None
        return value


class PollGroup(Strict):
    """Tags polled together at one interval (e.g. fast process values, slow meter totals)."""

    interval_s: float = Field(gt=0, le=86_400)


class WriteLimits(Strict):
    """What the gateway may write to a tag. Nothing outside these bounds ever reaches the PLC."""

    min: float
    max: float
    max_step: float | None = Field(default=None, gt=0, description="largest change per write")
    min_interval_s: float = Field(default=0.0, ge=0, description="least time between two writes")

    @model_validator(mode="after")
    def _ordered(self) -> WriteLimits:
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        if not math.isfinite(self.max - self.min):
            raise ValueError("max - min must be a finite number: give the limits the process really has")
        return self


class TagConfig(Strict):
    """One value on a device: where it is, how to decode it, and what it means."""

    function: FunctionName
    address: int = Field(ge=0, le=65_535)
    type: TypeName | None = None  # default: uint16 for registers, bool for coils/discretes
    word_order: Order | None = None  # default: the device's
    byte_order: Order | None = None  # default: the device's
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(default=None, ge=0, le=15)
    no_value: int | None = Field(default=None, description="raw value meaning 'sensor has no reading'")
    unit: str = ""
    description: str = ""
    group: Name = "default"
    deadband: float = Field(default=0.0, ge=0)
    range: tuple[float, float] | None = Field(default=None, description="plausible physical range")
    writable: WriteLimits | None = None

    @property
    def data_type(self) -> TypeName:
        """The effective type: the given one, else the natural one for the function."""
        if self.type is not None:
            return self.type
        return "bool" if self.function in BIT_FUNCTIONS else "uint16"

    @model_validator(mode="after")
    def _consistent(self) -> TagConfig:
        kind = self.data_type
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.function in BIT_FUNCTIONS and kind != "bool":
            raise ValueError(f"{self.function} tags are single bits: type must be bool, not {kind}")
        if self.bit is not None and kind not in ("int16", "uint16", "bool"):
            raise ValueError("bit selects one bit of a 16-bit register: use type uint16 or bool")
        if kind == "bool" and self.function in REGISTER_FUNCTIONS and self.bit is None:
            raise ValueError("a bool in a register needs bit: 0..15")
        if self.writable is not None and self.function not in WRITABLE_FUNCTIONS:
            raise ValueError(f"{self.function} values are read-only in Modbus: only holding and coil tags are writable")
        if self.range is not None and self.range[1] <= self.range[0]:
            raise ValueError("range must be [low, high] with low < high")
        if self.writable is not None and self.range is not None:
            low, high = self.range
            if self.writable.min < low or self.writable.max > high:
                raise ValueError("writable limits must lie inside the tag's range")
        return self


class ModbusDeviceBase(StrictTagged):
    """Settings every Modbus device has, whatever the transport."""

    _plain = plain_fields("unit_id", "timeout_s", "retries", "max_registers", "max_bits", "max_gap", "word_order",
                          "byte_order", "backoff", "tags", "host", "port", "serial_port", "baudrate", "parity",
                          "stopbits")

    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=5)
    max_registers: int = Field(default=125, ge=1, le=125, description="registers per read request")
    max_bits: int = Field(default=2000, ge=1, le=2000, description="coils/discretes per read request")
    max_gap: int = Field(default=16, ge=0, le=124, description="unused registers a read may span")
    word_order: Order = "big"
    byte_order: Order = "big"
    backoff: Backoff = Backoff()
    tags: dict[Name, TagConfig] = Field(min_length=1)


class ModbusTcpDevice(ModbusDeviceBase):
    """A PLC or meter on Ethernet (or behind a serial-to-Ethernet converter)."""

    protocol: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65_535)


class ModbusRtuDevice(ModbusDeviceBase):
    """A meter on an RS-485 line, as most heat meters are."""

    protocol: Literal["modbus_rtu"]
    serial_port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(default=1, ge=1, le=247)


Device = Annotated[ModbusTcpDevice | ModbusRtuDevice, Field(discriminator="protocol")]


class GatewayConfig(Strict):
    """The whole station configuration file."""

    station: StationInfo
    groups: dict[Name, PollGroup] = Field(default_factory=lambda: {"default": PollGroup(interval_s=1.0)})
    devices: dict[Name, Device] = Field(min_length=1)
    mqtt: MqttSettings | None = None
    controller: ControllerSettings | None = None
    report: ReportSettings = ReportSettings()
    metrics: MetricsSettings | None = None
    alarms: AlarmSettings | None = None  # absent: only the controller's signals are alarms
    events: EventSettings | None = None  # absent: no station events

    def tags(self) -> dict[str, tuple[str, TagConfig]]:
        """Every tag by name, with the device it belongs to."""
        return {tag: (device, cfg) for device, dev in self.devices.items() for tag, cfg in dev.tags.items()}

    def max_silence_s(self) -> dict[str, float]:
        """How long each tag's samples may normally pause: twice its poll interval plus its
        device's full timeout (``timeout_s`` x (1 + ``retries``)). Beyond that the value is stale,
        and its device is known lost if the device stopped answering."""
        return {tag: 2 * self.groups[cfg.group].interval_s + device.timeout_s * (1 + device.retries)
                for device in self.devices.values() for tag, cfg in device.tags.items()
                if cfg.group in self.groups}

    def problems(self) -> list[tuple[Path_, str]]:
        """Cross-reference checks that a single model cannot make on its own."""
        found: list[tuple[Path_, str]] = []
        owner: dict[str, str] = {}
        for device_name, device in self.devices.items():
            for tag_name, tag in device.tags.items():
                path: Path_ = ("devices", device_name, "tags", tag_name)
                if tag_name in owner:
                    found.append((path, f"tag name already used on device {owner[tag_name]!r}; tag names must be unique"))
                owner.setdefault(tag_name, device_name)
                if tag.group not in self.groups:
                    known = ", ".join(sorted(self.groups))
                    found.append(((*path, "group"), f"unknown group {tag.group!r} (defined: {known})"))
                if (capacity := _capacity_problem(tag)) is not None:
                    found.append(((*path, "writable"), capacity))
        report_tags: list[tuple[Path_, str | None]] = [(("report", "energy_tag"), self.report.energy_tag)]
        report_tags += [(("report", "first_week_tags", index), tag) for index, tag in enumerate(self.report.first_week_tags)]
        for where, tag in report_tags:
            if tag is not None and tag not in owner:
                found.append((where, f"unknown tag {tag!r}"))
        tag_devices = {tag: device for tag, (device, _) in self.tags().items()}
        if self.alarms is not None:
            found.extend(self.alarms.problems(tag_devices, self.max_silence_s()))
        if self.events is not None:
            found.extend(self.events.problems(tag_devices))
        return found + self._overlapping_writes()

    def _overlapping_writes(self) -> list[tuple[Path_, str]]:
        """A register (or coil) written by two tags: the second tag's limits would let a write bypass
        the first one's. Counted per physical device (same host and port, or serial line, and unit
        id) and over every register a multi-register value occupies; bits of one status word may be
        written by one tag each."""
        found: list[tuple[Path_, str]] = []
        writers: dict[tuple[object, ...], tuple[str, int | None]] = {}
        for device_name, device in self.devices.items():
            where = ((device.host, device.port) if isinstance(device, ModbusTcpDevice) else (device.serial_port,))
            for tag_name, tag in device.tags.items():
                if tag.writable is None:
                    continue
                width = 1 if tag.bit is not None or tag.function in BIT_FUNCTIONS else DataType(tag.data_type).registers
                for address in range(tag.address, tag.address + width):
                    key = (*where, device.unit_id, tag.function, address)
                    other = writers.get(key)
                    if other is not None and (other[1] is None or tag.bit is None or other[1] == tag.bit):
                        found.append((("devices", device_name, "tags", tag_name, "address"),
                                      f"{tag.function} {address} is already written by tag {other[0]!r}, within its "
                                      "own limits: one writable tag per register"))
                        break
                    writers.setdefault(key, (tag_name, tag.bit))
        return found


def _capacity_problem(tag: TagConfig) -> str | None:
    """Writable limits the tag's register cannot hold (3300..3630 on an int16 scaled by 0.1)."""
    if tag.writable is None or tag.bit is not None or tag.function not in REGISTER_FUNCTIONS:
        return None
    low, high = engineering_range(DataType(tag.data_type), tag.scale, tag.offset)
    if low <= tag.writable.min and tag.writable.max <= high:
        return None
    return (f"limits [{tag.writable.min:g}, {tag.writable.max:g}] do not fit the register: {tag.data_type} "
            f"with scale {tag.scale:g} and offset {tag.offset:g} holds {low:g} to {high:g}")


def load_gateway_config(path: Path) -> GatewayConfig:
    """Load and fully check a station configuration, or raise ConfigError naming file:line:field."""
    document = load_yaml(path)
    return check_gateway_document(document)


def check_gateway_document(document: YamlDocument) -> GatewayConfig:
    """Validate an already parsed station configuration document."""
    config = validate_document(document, GatewayConfig)
    problems = config.problems()
    if problems:
        raise ConfigError([document.error(path, message) for path, message in problems])
    return config
