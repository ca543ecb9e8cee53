"""The historian bridge's configuration file: typed, strict, and reported as ``file:line:col``.

It is a separate file from ``station.yaml`` because the bridge runs at the dispatch centre, not at
a station, and one bridge serves many stations. It is loaded with the same YAML loader and
validator as the station file so its mistakes read exactly the same way.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from gateway.config_base import Backoff, MetricsSettings, Strict
from gateway.mqtt.payloads import SEQUENCED_KINDS, RecordedKind
from gateway.mqtt.settings import BrokerSettings
from gateway.historian.schema import PayloadLimits
from gateway.validation import validate_document
from gateway.files import unreadable
from gateway.yaml_source import ConfigError, Path_, load_yaml

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""Instance ids and share-group names: they become MQTT client ids and topic levels, so no
wildcards, slashes or spaces."""



def _default_instance() -> str:
    """The host name, reduced to what an MQTT client id and a historian tag accept."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].strip("-.")
    return name or "historian"


class RetryBackoff(Backoff):
    """Exponential, capped, jittered pacing for reconnects and write retries."""

    initial_s: float = Field(default=0.5, gt=0, le=3600)
    max_s: float = Field(default=30.0, gt=0, le=3600)


class MqttSettings(BrokerSettings):
    """The broker (or one node of a broker cluster) the bridge reads from: the station's broker
    model, with a loopback default and an inline password allowed (dispatch-centre hosts keep
    their secrets their own way)."""

    host: str = Field(default="127.0.0.1", min_length=1)
    password: str | None = None
    session_expiry_s: int = Field(default=7 * 86_400, ge=60, le=4_294_967_295,
                                  description="how long the broker keeps this bridge's queue while it is away")
    max_pending_messages: int = Field(default=1000, ge=2, le=65_535,
                                      description="received but not yet written and acknowledged; reading pauses at this bound")
    reconnect: RetryBackoff = RetryBackoff(initial_s=1.0, max_s=30.0)

    @model_validator(mode="after")
    def _one_password(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        return self


class TopicSettings(Strict):
    """Which stations and which kinds of message this bridge group records."""

    prefix: Annotated[str, StringConstraints(pattern=r"^[^#+$/][^#+]*$")] = "heatgw"
    share_group: Identifier = "historian"
    stations: list[Annotated[str, StringConstraints(pattern=r"^(\+|[a-z0-9][a-z0-9_-]{0,63})$")]] = Field(
        default_factory=lambda: ["+"], min_length=1)
    kinds: list[RecordedKind] = Field(default_factory=lambda: ["telemetry", "control", "alarms", "events", "status"],
                              min_length=1)

    @model_validator(mode="after")
    def _one_sequence(self) -> TopicSettings:
        """The durable kinds share one sequence: a bridge that left one out would see its numbers
        as holes and ask the stations for them forever."""
        left_out = [kind for kind in SEQUENCED_KINDS if kind not in self.kinds]
        if left_out:
            raise ValueError(f"kinds must include {', '.join(SEQUENCED_KINDS)} (they share one sequence); "
                             f"missing: {', '.join(left_out)}")
        return self


class InfluxSettings(Strict):
    """The time-series database: anything serving the InfluxDB v2 write API."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/.*)?$")]
    token: str | None = None
    token_file: Path | None = None
    org: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    gzip: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_token(self) -> InfluxSettings:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token or token_file")
        return self

    def read_token(self) -> str:
        """The token, from the file if one is named (so it can live outside the YAML, e.g. systemd credentials)."""
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        return self.token_file.read_text(encoding="utf-8").strip()


class BatchSettings(Strict):
    """When a batch is written: whichever bound is reached first."""

    max_values: int = Field(default=5000, ge=1, le=1_000_000)
    max_age_s: float = Field(default=1.0, gt=0, le=60)


class SequenceSettings(Strict):
    """Gap detection and the wait for a station's ``meta`` before its first write."""

    gap_grace_s: float = Field(default=30.0, gt=0, le=86_400,
                               description="a missing seq is a gap once later ones have been seen this long")
    meta_wait_s: float = Field(default=5.0, ge=0, le=600,
                               description="hold a station's messages this long for its retained meta")
    peer_report_s: float = Field(default=1.0, gt=0, le=60,
                                 description="how often bridges tell each other, and the stations, what they wrote")
    replay_retry_s: float = Field(default=60.0, gt=0, le=86_400,
                                  description="how often a hole that stays open is asked for again")


class ValidationSettings(Strict):
    """What a message may be before it enters a batch; one that is not is quarantined."""

    max_message_bytes: int = Field(default=16 * 2**20, ge=4096, le=256 * 2**20,
                                   description="larger payloads are refused unparsed")
    max_depth: int = Field(default=32, ge=4, le=256, description="JSON nesting depth")
    max_past_days: float = Field(default=3650, gt=0, le=36_500,
                                 description="oldest sample time accepted, days before now")
    max_future_s: float = Field(default=86_400, ge=0, le=365 * 86_400,
                                description="newest sample time accepted, seconds after now")

    def limits(self) -> PayloadLimits:
        return PayloadLimits(max_bytes=self.max_message_bytes, max_depth=self.max_depth,
                             past_s=self.max_past_days * 86_400, future_s=self.max_future_s)


class QuarantineSettings(Strict):
    """The dead-letter files of refused messages in the state directory: rotated, size-capped."""

    max_file_bytes: int = Field(default=16 * 2**20, ge=4096, le=2**31)
    keep_files: int = Field(default=4, ge=1, le=100, description="rotated files kept besides the current one")
    max_payload_bytes: int = Field(default=65_536, ge=256, le=16 * 2**20,
                                   description="a payload's first bytes kept in its record")


class HistorianSettings(Strict):
    """The whole ``historian.yaml``."""

    instance: Identifier = Field(default_factory=_default_instance)
    site: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "default"
    mqtt: MqttSettings = MqttSettings()
    topics: TopicSettings = TopicSettings()
    influxdb: InfluxSettings
    batch: BatchSettings = BatchSettings()
    retry: RetryBackoff = RetryBackoff()
    sequence: SequenceSettings = SequenceSettings()
    validation: ValidationSettings = ValidationSettings()
    quarantine: QuarantineSettings = QuarantineSettings()
    state_dir: Path = Path("/var/lib/heatgw-historian")
    metrics_interval_s: float = Field(default=10.0, gt=0, le=3600)
    metrics: MetricsSettings | None = None
    write_reason: bool = False

    @property
    def client_id(self) -> str:
        """The durable MQTT session's id: stable across restarts, so the broker keeps our queue."""
        return f"heatgw-historian-{self.instance}"


    def referenced_files(self) -> list[tuple[Path_, Path]]:
        """Secrets and certificates named by the file, with where they are named."""
        found: list[tuple[Path_, Path | None]] = [
            (("influxdb", "token_file"), self.influxdb.token_file),
            (("influxdb", "ca_file"), self.influxdb.ca_file),
            (("mqtt", "password_file"), self.mqtt.password_file),
        ]
        if self.mqtt.tls is not None:
            found += [(("mqtt", "tls", name), getattr(self.mqtt.tls, name)) for name in ("ca_file", "cert_file", "key_file")]
        return [(where, path) for where, path in found if path is not None]


def load_historian_settings(path: Path) -> HistorianSettings:
    """Load and validate ``path``; raise ConfigError with ``file:line:col: field: message`` lines.

    A token or certificate file that cannot be read is a configuration error too: found here,
    ``ExecStartPre`` refuses to start instead of the bridge crash-looping on it.
    """
    document = load_yaml(path)
    settings = validate_document(document, HistorianSettings)
    problems = []
    for where, file in settings.referenced_files():
        if (problem := unreadable(file)) is not None:
            problems.append(document.error(where, problem))
    if problems:
        raise ConfigError(problems)
    return settings
