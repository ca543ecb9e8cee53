"""Configuration of OPC UA devices and their tags (``protocol: opcua`` in the station file).

Nodes are named by namespace URI, never by namespace index: a server may renumber its
namespaces when it restarts or its configuration changes, and a gateway that kept the index
would go on reading the wrong nodes with good quality. A tag names its node either by NodeId
(``ns=<alias>;s=...``, ``i=``, ``g=``, or ``nsu=<uri>;...``) or by browse path from the Objects
folder (``plc:Station/plc:SecondarySide/plc:SupplySetpoint``); both are resolved at every connect.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from gateway.acquisition.models import DeviceConfigBase, TagBase, decimals
from gateway.config_base import Name, Strict, plain_fields

Endpoint = Annotated[str, StringConstraints(pattern=r"^opc\.tcp://[^\s/:]+(:\d{1,5})?(/\S*)?$")]
STANDARD_ALIAS = "ua"
"""Namespace 0 (the OPC Foundation's), the one index that never changes; usable without declaring it."""

_NODE_ID = re.compile(r"^(?:(?:ns|nsu)=(?P<namespace>[^;]+);)?(?P<kind>[isg])=(?P<identifier>.+)$")
_BROWSE_ELEMENT = re.compile(r"^(?P<alias>[a-z][a-z0-9_]*):(?P<name>[^/]+)$")


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A NodeId with its namespace as a URI: what a tag's ``node:`` says once parsed."""

    namespace_uri: str | None  # None: namespace 0
    kind: Literal["i", "s", "g"]
    identifier: int | str | uuid.UUID


@dataclass(frozen=True, slots=True)
class BrowseStep:
    namespace_uri: str | None
    name: str


class Security(Strict):
    """How the session is secured. ``None`` is for a lab; a station uses ``SignAndEncrypt``.

    The gateway's own certificate and key live in the state directory (``opcua/``) and are
    created on first start when absent, with ``application_uri`` in them (servers check it). The
    server's certificate must be in ``trust_dir`` (copy its DER or PEM file there): an unknown
    server is refused, never trusted on first use.
    """

    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256", "Aes128_Sha256_RsaOaep"] = "Basic256Sha256"
    application_uri: str = "urn:heatgw:gateway"
    certificate: Path | None = Field(default=None, description="default: <state>/opcua/gateway-cert.der")
    private_key: Path | None = Field(default=None, description="default: <state>/opcua/gateway-key.pem")
    trust_dir: Path | None = Field(default=None, description="server certificates trusted; required with Sign*")

    @model_validator(mode="after")
    def _trust_list_when_secured(self) -> Security:
        if self.mode != "None" and self.trust_dir is None:
            raise ValueError("trust_dir is required with Sign or SignAndEncrypt: the server's certificate "
                             "must be trusted explicitly")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both certificate and private_key, or neither (then they are created)")
        return self


class UserLogin(Strict):
    """A user name, with its password in a file (never in the station file itself)."""

    username: str = Field(min_length=1)
    password_file: Path


class Filter(Strict):
    """A data-change filter: changes smaller than this are not sent by the server (and not passed on
    by the gateway, for servers that ignore it). Not the tag's ``deadband``, which only decides what
    is reported upstream: a filter decides what the controller and the alarms see."""

    filter_deadband: float | None = Field(default=None, gt=0, description="absolute, engineering units")
    filter_deadband_percent: float | None = Field(default=None, gt=0, le=100, description="of the node's EURange")

    @model_validator(mode="after")
    def _one_kind(self) -> Filter:
        if self.filter_deadband is not None and self.filter_deadband_percent is not None:
            raise ValueError("give filter_deadband (absolute) or filter_deadband_percent, not both")
        return self


class Subscription(Filter):
    """How one group is acquired from this device: pushed (a subscription) or polled (Read), and
    the data-change filter of its tags (a tag's own filter takes precedence)."""

    mode: Literal["subscribe", "poll"] | None = Field(default=None, description="default: the device's mode")
    publishing_interval_s: float | None = Field(default=None, gt=0, le=3600, description="default: the group's interval")
    sampling_interval_s: float | None = Field(default=None, ge=0, le=3600,
                                              description="default: the publishing interval")
    queue_size: int = Field(default=1, ge=1, le=1000)


class OpcUaTag(TagBase, Filter):
    """One variable node: where it is (``node`` or ``browse_path``) and what it means."""

    node: str | None = None
    browse_path: str | None = None
    resolution_: float = Field(default=0.01, gt=0, alias="resolution",
                               description="smallest step the PLC holds; read-back matches within half of it")

    def resolution(self) -> float:
        return self.resolution_

    def telemetry_digits(self) -> int:
        return decimals(self.resolution_)

    @model_validator(mode="after")
    def _one_address(self) -> OpcUaTag:
        if (self.node is None) == (self.browse_path is None):
            raise ValueError("give the node by exactly one of node or browse_path")
        if not math.isfinite(self.resolution_):
            raise ValueError("resolution must be a finite number")
        return self


class OpcUaDevice(DeviceConfigBase):
    """A PLC (or any OPC UA server) reached at ``endpoint``."""

    _plain = plain_fields("endpoint", "namespaces", "timeout_s", "keepalive_s", "session_timeout_s", "mode",
                          "subscriptions", "max_nodes_per_read", "security", "user")

    protocol: Literal["opcua"]
    endpoint: Endpoint
    namespaces: dict[Name, str] = Field(default_factory=dict, description="alias -> namespace URI")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="answer time of one request")
    keepalive_s: float = Field(default=2.0, gt=0, le=60, description="how often the session is checked alive")
    session_timeout_s: float = Field(default=60.0, ge=10, le=3600)
    mode: Literal["subscribe", "poll"] = "subscribe"
    subscriptions: dict[Name, Subscription] = Field(default_factory=dict, description="per group")
    max_nodes_per_read: int = Field(default=500, ge=1, le=10_000)
    security: Security = Security()
    user: UserLogin | None = None
    tags: dict[Name, OpcUaTag] = Field(min_length=1)

    def answer_budget_s(self) -> float:
        # A subscribed value is confirmed by the next publish or keep-alive; a read answers
        # within timeout_s. Either way the session watchdog notices a dead server within this.
        return self.timeout_s + self.keepalive_s

    def uri(self, alias: str | None) -> str | None:
        """The namespace URI an alias (or an ``nsu=`` URI itself) stands for; ``None`` for namespace 0."""
        if alias is None or alias in (STANDARD_ALIAS, "0"):
            return None
        if alias in self.namespaces:
            return self.namespaces[alias]
        if ":" in alias:  # nsu=urn:... or nsu=http://...
            return alias
        raise ValueError(f"unknown namespace {alias!r}: declare it under namespaces (alias: URI); "
                         "numeric indexes are not accepted because servers renumber them")

    def node_ref(self, text: str) -> NodeRef:
        """Parse a tag's ``node:`` (raises ValueError naming what is wrong)."""
        match = _NODE_ID.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a NodeId: write ns=<alias>;s=<name> (or i=, g=)")
        kind = match["kind"]
        raw = match["identifier"]
        identifier: int | str | uuid.UUID = raw
        if kind == "i":
            identifier = int(raw) if raw.isdigit() else -1
            if not 0 <= identifier <= 0xFFFFFFFF:
                raise ValueError(f"{text!r}: a numeric identifier is 0..4294967295")
        elif kind == "g":
            try:
                identifier = uuid.UUID(raw)
            except ValueError:
                raise ValueError(f"{text!r}: not a GUID") from None
        return NodeRef(self.uri(match["namespace"]), kind, identifier)  # type: ignore[arg-type]

    def browse_steps(self, text: str) -> tuple[BrowseStep, ...]:
        """Parse a tag's ``browse_path:`` (``alias:Name/alias:Name``, from the Objects folder)."""
        steps = []
        for element in text.strip().strip("/").split("/"):
            match = _BROWSE_ELEMENT.match(element)
            if match is None:
                raise ValueError(f"browse path element {element!r}: write <alias>:<BrowseName>")
            steps.append(BrowseStep(self.uri(match["alias"]), match["name"]))
        return tuple(steps)

    def subscription(self, group: str) -> Subscription:
        return self.subscriptions.get(group, Subscription())

    def group_mode(self, group: str) -> Literal["subscribe", "poll"]:
        return self.subscription(group).mode or self.mode

    def data_filter(self, tag: str) -> Filter:
        """The tag's own data-change filter if it has one, else its group's."""
        own = self.tags[tag]
        if own.filter_deadband is not None or own.filter_deadband_percent is not None:
            return own
        return self.subscription(own.group)

    def address_problems(self) -> dict[str, str]:
        """Tags whose ``node``/``browse_path`` does not parse or names an undeclared namespace."""
        problems = {}
        for name, tag in self.tags.items():
            try:
                if tag.node is not None:
                    self.node_ref(tag.node)
                else:
                    assert tag.browse_path is not None
                    self.browse_steps(tag.browse_path)
            except ValueError as exc:
                problems[name] = str(exc)
        return problems
