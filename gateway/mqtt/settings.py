"""The ``mqtt:`` section of the station configuration.

Defaults are chosen for a station on a cellular link: a keepalive short enough that dispatch sees a
dead link within a minute, telemetry batched per second, and an outbox sized so that a 72-hour
outage of a 500-tag station polled every second fits even when every value changes every second
(the sizing is worked out, with the measured bytes per value, in bench/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from gateway.config_base import Backoff, Strict

GIB = 1024**3

TopicPrefix = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")]
"""One or more topic levels without wildcards or empty levels."""


class TlsSettings(Strict):
    """TLS to the broker, at either end of the contract. The broker's certificate is always verified,
    host name included: against ``ca_file``, or the system's trust store where none is given (a
    historian at a dispatch centre may use a broker with a public certificate; a station may not:
    ``StationTls``)."""

    ca_file: Path | None = None
    cert_file: Path | None = Field(default=None, description="client certificate, when the broker requires one")
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class StationTls(TlsSettings):
    """A station trusts its configured CA only: a gateway that talks to whoever answers would take
    commands from anyone."""

    ca_file: Path


class BrokerSettings(Strict):
    """Where the broker is and how to log in to it: one model for the station's gateway and the
    historian bridge (``gateway.historian.settings``), read the same way (``gateway.mqtt.broker``).
    Variants redeclare only the defaults and fields they need."""

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65_535)
    username: str | None = None
    password_file: Path | None = Field(default=None, description="file holding the password (its first line)")
    tls: TlsSettings | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)

    @model_validator(mode="after")
    def _credentials(self) -> BrokerSettings:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self


class ReconnectBackoff(Backoff):
    """Pacing of reconnection attempts: exponential, capped, jittered so that a fleet of stations
    does not reconnect in lock-step after a broker restart."""

    max_s: float = Field(default=60.0, gt=0, le=3600)


class OutboxSettings(Strict):
    """The durable outbox: how much it may hold, and what a commit survives.

    When either cap is exceeded the OLDEST messages are dropped, counted, logged and reported in
    the status message; their sequence numbers then show as a gap at the receiver.
    """

    max_bytes: int = Field(default=2 * GIB, ge=1024**2, description="disk space the buffered messages may use")
    max_age_h: float = Field(default=168.0, gt=0, le=24 * 366, description="messages older than this are dropped")
    durability: Literal["full", "normal"] = Field(
        default="full",
        description="full: a committed message survives power loss (one fsync per message); "
        "normal: it survives a process crash only",
    )


class MqttSettings(BrokerSettings):
    """Broker connection, topics and store-and-forward policy. The password is never inline."""

    client_id: str | None = Field(default=None, max_length=128, description="default: heatgw-<station id>")
    tls: StationTls | None = None
    topic_prefix: TopicPrefix = "heatgw"
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120)
    batch_max_age_s: float = Field(default=1.0, gt=0, le=60)
    batch_max_samples: int = Field(default=1000, ge=1, le=100_000)
    integrity_interval_s: float = Field(default=300.0, gt=0, le=86_400)
    max_inflight: int = Field(default=16, ge=1, le=1000, description="telemetry messages awaiting PUBACK")
    reconnect: ReconnectBackoff = ReconnectBackoff()
    outbox: OutboxSettings = OutboxSettings()
