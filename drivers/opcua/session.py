"""One OPC UA session: connect (securely), resolve the tags' nodes, Read and Write in batches.

Everything asyncua raises is turned into ``drivers.base`` errors here, at the edge, so the device
and the write queue only ever see ``DeviceTimeout``, ``DeviceUnreachable`` and ``DeviceRefused``
(with the StatusCode's name). Namespaces are looked up by URI on every connect, because the
index of a namespace may change when the server restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from drivers.base import DeviceError, DeviceRefused, DeviceTimeout, DeviceUnreachable
from drivers.opcua.config import BrowseStep, NodeRef, OpcUaDevice, OpcUaTag
from drivers.opcua.security import (
    MODES, POLICIES, LoginRefused, check_trusted, gateway_identity, read_password, server_certificate)
from drivers.opcua.values import status_name
from gateway.logs import kv

log = logging.getLogger(__name__)

_SESSION_GONE = {
    ua.StatusCodes.BadSessionClosed, ua.StatusCodes.BadSessionIdInvalid, ua.StatusCodes.BadSecureChannelClosed,
    ua.StatusCodes.BadSecureChannelIdInvalid, ua.StatusCodes.BadConnectionClosed, ua.StatusCodes.BadServerNotConnected,
    ua.StatusCodes.BadShutdown, ua.StatusCodes.BadCommunicationError, ua.StatusCodes.BadNotConnected,
}
_LOGIN_REFUSED = {
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid, ua.StatusCodes.BadUserSignatureInvalid,
}


@dataclass(frozen=True, slots=True)
class Node:
    """A tag's node as the connected server knows it."""

    node_id: ua.NodeId
    variant: ua.VariantType | None  # the built-in type the node declares (None: not a built-in one)
    deadband: float  # absolute, in engineering units (a percent deadband converted with the EURange)


@contextlib.contextmanager
def device_errors(what: str, timeout_s: float) -> Iterator[None]:
    """Translate asyncua's failures of ``what`` into the gateway's ``DeviceError`` types."""
    try:
        yield
    except DeviceError:
        raise
    except (TimeoutError, asyncio.TimeoutError):
        raise DeviceTimeout(f"{what}: no answer within {timeout_s:g} s") from None
    except UaStatusCodeError as exc:
        code = ua.StatusCode(exc.code)
        if exc.code in _SESSION_GONE:
            raise DeviceUnreachable(f"{what}: {status_name(code)}") from None
        raise DeviceRefused(f"{what}: {status_name(code)}") from None
    except (ConnectionError, OSError, UaError) as exc:
        raise DeviceUnreachable(f"{what}: {exc or type(exc).__name__}") from None


class Session:
    """One client session: ``open()`` it, ``close()`` it whatever happened in between."""

    def __init__(self, config: OpcUaDevice, state_dir: Path | None,
                 on_lost: Callable[[str], None]) -> None:
        self.config = config
        self._state_dir = state_dir
        self._on_lost = on_lost
        self.client = Client(config.endpoint, timeout=config.timeout_s, watchdog_intervall=config.keepalive_s)
        self.client.session_timeout = int(config.session_timeout_s * 1000)
        self.client.name = self.client.description = "heatgw gateway"
        self.client.application_uri = config.security.application_uri

    async def close(self) -> None:
        """Close the session politely if the server is still there, the socket in any case.

        asyncua stops its own tasks (publish loop, keep-alive) before it sends CloseSession, so
        giving up on an unanswered goodbye leaves nothing running but the socket, closed here.
        """
        try:
            with contextlib.suppress(Exception):  # a dead server cannot be told goodbye; nothing to recover
                await asyncio.wait_for(self.client.disconnect(), self.config.timeout_s)
        finally:
            self.client.disconnect_socket()

    async def open(self) -> None:
        """Connect: check the server against the trust list first when secured, then log in."""
        endpoint = self.config.endpoint
        security = self.config.security
        if security.mode != "None":
            identity = gateway_identity(security, self._state_dir)
            with device_errors(f"endpoints of {endpoint}", self.config.timeout_s):
                probe = Client(endpoint, timeout=self.config.timeout_s)
                endpoints = await probe.connect_and_get_server_endpoints()
            certificate = server_certificate(endpoints, security, endpoint)
            assert security.trust_dir is not None  # the model requires it when secured
            check_trusted(certificate, security.trust_dir, endpoint)
            with device_errors(f"the gateway's certificate {identity.certificate}", self.config.timeout_s):
                await self.client.set_security(POLICIES[security.policy], str(identity.certificate),
                                               str(identity.private_key), server_certificate=certificate,
                                               mode=MODES[security.mode])
        if self.config.user is not None:
            self.client.set_user(self.config.user.username)
            self.client.set_password(read_password(self.config.user))
        self.client.connection_lost_callback = self._lost
        try:
            with device_errors(f"connect to {endpoint}", self.config.timeout_s):
                await self.client.connect()
        except DeviceRefused as exc:
            user = self.config.user
            if user is not None and any(status_name(ua.StatusCode(code)) in str(exc) for code in _LOGIN_REFUSED):
                raise LoginRefused(f"{endpoint} refused the login of user {user.username!r} "
                                   f"({str(exc).rsplit(': ', 1)[-1]}): wrong user name or password?") from None
            raise

    async def _lost(self, exc: Exception) -> None:
        """asyncua's watchdog: the server stopped answering its keep-alive read, or the socket closed."""
        self._on_lost(f"session lost: {exc or type(exc).__name__}")

    # --- nodes ---

    async def resolve(self, tags: Mapping[str, OpcUaTag]) -> tuple[dict[str, Node], dict[str, str]]:
        """The nodes of ``tags`` on this server, and why the others cannot be read (tag -> reason)."""
        with device_errors("namespace array", self.config.timeout_s):
            namespaces = await self.client.get_namespace_array()
        index = {uri: i for i, uri in enumerate(namespaces)}
        ids: dict[str, ua.NodeId] = {}
        problems: dict[str, str] = {}
        paths: dict[str, tuple[BrowseStep, ...]] = {}
        for name, tag in tags.items():
            try:
                if tag.node is not None:
                    ids[name] = _node_id(self.config.node_ref(tag.node), index)
                else:
                    assert tag.browse_path is not None
                    paths[name] = self.config.browse_steps(tag.browse_path)
                    _check_namespaces(paths[name], index)
            except ValueError as exc:
                problems[name] = str(exc)
        found, missing = await self._translate({n: p for n, p in paths.items() if n not in problems}, index)
        ids.update(found)
        problems.update(missing)
        nodes, unknown = await self._describe(ids, tags)
        problems.update(unknown)
        return nodes, problems

    async def _translate(self, paths: Mapping[str, tuple[BrowseStep, ...]],
                         index: Mapping[str, int]) -> tuple[dict[str, ua.NodeId], dict[str, str]]:
        if not paths:
            return {}, {}
        requests = [ua.BrowsePath(StartingNode=ua.NodeId(ua.ObjectIds.ObjectsFolder), RelativePath=ua.RelativePath(
            Elements=[_element(step.name, 0 if step.namespace_uri is None else index[step.namespace_uri])
                      for step in steps])) for steps in paths.values()]
        with device_errors("translate browse paths", self.config.timeout_s):
            results = await self.client.uaclient.translate_browsepaths_to_nodeids(requests)
        found: dict[str, ua.NodeId] = {}
        missing: dict[str, str] = {}
        for name, result in zip(paths, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                target = result.Targets[0].TargetId
                found[name] = ua.NodeId(target.Identifier, target.NamespaceIndex)
            else:
                missing[name] = status_name(result.StatusCode)
        return found, missing

    async def _describe(self, ids: Mapping[str, ua.NodeId],
                        tags: Mapping[str, OpcUaTag]) -> tuple[dict[str, Node], dict[str, str]]:
        """Read each node's DataType (which also proves the node exists) and the EURange a percent
        filter needs."""
        names = list(ids)
        types = await self.read([ids[n] for n in names], ua.AttributeIds.DataType)
        nodes: dict[str, Node] = {}
        problems: dict[str, str] = {}
        for name, data in zip(names, types, strict=True):
            if data.StatusCode is not None and not data.StatusCode.is_good():
                problems[name] = status_name(data.StatusCode)
                continue
            data_type = data.Value.Value if data.Value is not None else None
            variant = (ua.VariantType(data_type.Identifier) if isinstance(data_type, ua.NodeId)
                       and data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int)
                       and 1 <= data_type.Identifier <= 25 else None)
            nodes[name] = Node(ids[name], variant, self.config.data_filter(name).filter_deadband or 0.0)
        percent = {n: p for n in nodes if (p := self.config.data_filter(n).filter_deadband_percent) is not None}
        for name, span in (await self._eu_spans([nodes[n].node_id for n in percent], list(percent))).items():
            nodes[name] = Node(nodes[name].node_id, nodes[name].variant, (percent[name] or 0.0) / 100 * span)
        return nodes, problems

    async def _eu_spans(self, node_ids: Sequence[ua.NodeId], names: Sequence[str]) -> dict[str, float]:
        """High - Low of each node's EURange property; nodes without one keep the server's filter only."""
        if not node_ids:
            return {}
        requests = [ua.BrowsePath(StartingNode=node_id, RelativePath=ua.RelativePath(
            Elements=[_element("EURange", 0, hierarchical=False)])) for node_id in node_ids]
        with device_errors("EURange of percent-deadband nodes", self.config.timeout_s):
            results = await self.client.uaclient.translate_browsepaths_to_nodeids(requests)
        ranges = {name: ua.NodeId(r.Targets[0].TargetId.Identifier, r.Targets[0].TargetId.NamespaceIndex)
                  for name, r in zip(names, results, strict=True) if r.StatusCode.is_good() and r.Targets}
        values = await self.read(list(ranges.values()))
        spans = {}
        for name, data in zip(ranges, values, strict=True):
            value = data.Value.Value if data.Value is not None else None
            if isinstance(value, ua.Range) and value.High > value.Low:
                spans[name] = value.High - value.Low
        for name in set(names) - set(spans):
            log.warning("no EURange on a node with filter_deadband_percent: only the server applies it",
                        extra=kv(endpoint=self.config.endpoint, tag=name))
        return spans

    # --- services ---

    async def read(self, node_ids: Sequence[ua.NodeId],
                   attribute: ua.AttributeIds = ua.AttributeIds.Value) -> list[ua.DataValue]:
        """Read ``attribute`` of every node, ``max_nodes_per_read`` per request."""
        results: list[ua.DataValue] = []
        step = self.config.max_nodes_per_read
        for start in range(0, len(node_ids), step):
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.NodesToRead = [ua.ReadValueId(NodeId=node_id, AttributeId=attribute)
                                  for node_id in node_ids[start:start + step]]
            with device_errors("read", self.config.timeout_s):
                results.extend(await self.client.uaclient.read(params))
        return results

    async def write(self, node_id: ua.NodeId, variant: ua.Variant) -> None:
        """Write one value; a Bad result (``BadOutOfRange`` from the PLC...) is ``DeviceRefused``."""
        params = ua.WriteParameters()
        params.NodesToWrite = [ua.WriteValue(NodeId=node_id, AttributeId=ua.AttributeIds.Value,
                                             Value=ua.DataValue(variant))]
        with device_errors("write", self.config.timeout_s):
            (result,) = await self.client.uaclient.write(params)
        if not result.is_good():
            raise DeviceRefused(f"the server refused the write: {status_name(result)}")


def _node_id(ref: NodeRef, index: Mapping[str, int]) -> ua.NodeId:
    if ref.namespace_uri is None:
        return ua.NodeId(ref.identifier, 0)
    if ref.namespace_uri not in index:
        raise ValueError(f"namespace {ref.namespace_uri} is not on the server")
    return ua.NodeId(ref.identifier, index[ref.namespace_uri])


def _check_namespaces(steps: Sequence[BrowseStep], index: Mapping[str, int]) -> None:
    for step in steps:
        if step.namespace_uri is not None and step.namespace_uri not in index:
            raise ValueError(f"namespace {step.namespace_uri} is not on the server")


def _element(name: str, namespace: int, *, hierarchical: bool = True) -> ua.RelativePathElement:
    reference = ua.ObjectIds.HierarchicalReferences if hierarchical else ua.ObjectIds.HasProperty
    return ua.RelativePathElement(ReferenceTypeId=ua.NodeId(reference), IsInverse=False, IncludeSubtypes=True,
                                  TargetName=ua.QualifiedName(name, namespace))
