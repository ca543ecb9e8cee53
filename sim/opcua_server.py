"""OPC UA server for a simulated station: the station PLC's address space (``sim.opcua_space``).

It shows the same physics as the Modbus server and writes to the same PLC: ``update`` publishes
each new snapshot (only the values that changed are written, stamped with the wall-clock time
as a PLC stamps them), and a client's write to a writable node is checked against the PLC's
limits before it touches anything (``BadOutOfRange``, and the PLC keeps its value).

What a test rig needs on top of a device (``OpcUaFaults``):

* ``offline``: the PLC is gone (listener and every session closed) until the fault is cleared;
* ``delay_s``: Read and Write are answered late, like an overloaded PLC;
* ``bad``: nodes whose value goes bad with a given StatusCode (``BadSensorFailure`` ...);
* ``removed``: nodes deleted from the address space (a program download without them);
* ``subscriptions=False``: CreateSubscription is refused (``BadTooManySubscriptions``), like the
  small embedded servers that only answer Read.

``stop()``/``start()`` restart the server on the same port with a fresh address space, and every
start registers one more placeholder namespace ahead of the station's, so the station namespace's
index changes across restarts the way it does on real servers whose configuration changed; a
client that kept the index instead of the URI reads the wrong nodes.

Security is optional (``OpcUaSecurity``): the server's certificate and key (made by the caller),
the policies offered, and user names with passwords (anonymous is refused when users are given).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService

from sim.opcua_space import HEARTBEAT_ID, NAMESPACE_URI, PROGRAM_ID, ROOT_NAME, UNECE_NAMESPACE, Kind, OpcPoint, address_space
from sim.readings import Measurements
from sim.registers import DEFAULT_MAP, PlcCommand, RegisterMap, Snapshot
from sim.station_view import StationLike, StationView, apply_command

log = logging.getLogger(__name__)

SERVER_URI = "urn:heatgw:sim:station-plc-server"


@dataclass(frozen=True, slots=True)
class OpcUaFaults:
    """How the OPC UA server misbehaves; the default is a healthy PLC."""

    offline: bool = False
    delay_s: float = 0.0
    bad: Mapping[str, str] = field(default_factory=dict)  # node id -> StatusCode name
    removed: frozenset[str] = frozenset()
    subscriptions: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 3600:
            raise ValueError(f"delay_s must be within 0..3600 s, got {self.delay_s}")
        for node, code in self.bad.items():
            if not code.startswith(("Bad", "Uncertain")) or not hasattr(ua.StatusCodes, code):
                raise ValueError(f"{node}: {code!r} is not a Bad or Uncertain OPC UA StatusCode name")


HEALTHY = OpcUaFaults()


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """Certificate, key and policies the server offers; ``users`` (name -> password) closes anonymous access."""

    certificate: Path
    private_key: Path
    policies: tuple[str, ...] = ("Basic256Sha256_SignAndEncrypt",)  # ua.SecurityPolicyType names
    users: Mapping[str, str] | None = None

    def policy_types(self) -> list[ua.SecurityPolicyType]:
        try:
            return [ua.SecurityPolicyType[name] for name in self.policies]
        except KeyError as exc:
            raise ValueError(f"unknown security policy {exc}") from None


class _PasswordUsers:
    """asyncua user manager: the configured names with their passwords, nobody else."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class _PlcAttributes(AttributeService):
    """The Write service with the PLC behind it: limits first, then the value, then the PLC loop.

    asyncua's own Write accepts any value of the right type; a PLC refuses a setpoint outside its
    limits, so writable nodes are checked here and refused with ``BadOutOfRange`` before anything
    changes. The slow-PLC fault delays writes here as well.
    """

    def __init__(self, aspace: AddressSpace, server: StationOpcUaServer) -> None:
        super().__init__(aspace)
        self._server = server

    async def write(self, params: ua.WriteParameters, user: User = User(role=UserRole.Admin)) -> list[ua.StatusCode]:
        await self._server.slow_down()
        self._server.writes_received += len(params.NodesToWrite)
        results = []
        for item in params.NodesToWrite:
            point = self._server.point_at(item.NodeId) if item.AttributeId == ua.AttributeIds.Value else None
            refusal = None if point is None else self._server.refusal(point, item.Value)
            if refusal is not None:
                results.append(ua.StatusCode(refusal))
                continue
            (status,) = await super().write(ua.WriteParameters(NodesToWrite=[item]), user)
            if status.is_good() and point is not None and point.writable:
                self._server.apply_write(point, item.Value.Value.Value)
            results.append(status)
        return results


class StationOpcUaServer:
    """Serves one station's PLC over OPC UA (``opc.tcp://host:port/heatgw/station``).

    ``port=0`` binds a free port, kept across ``stop()``/``start()``. A station with more than
    one circuit must be ``CircuitsLike``, as for the Modbus server.
    """

    def __init__(
        self,
        station: StationLike,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        register_map: RegisterMap = DEFAULT_MAP,
        security: OpcUaSecurity | None = None,
    ) -> None:
        self._view = StationView(station, register_map.layout)
        self._host, self._port = host, port
        self._security = security
        self._points = address_space(register_map)
        self._by_id = {point.node_id: point for point in self._points}
        self._faults = HEALTHY
        self.writes_received = 0
        """Values clients asked to write, refused or not (a test proves a gateway's refusal stayed local)."""
        self._measurements = station.measurements()
        self._circuits = self._view.circuit_measurements()
        self._server: Server | None = None
        self._index = 0
        self._starts = 0
        self._nodes: dict[str, ua.NodeId] = {}
        self._shown: dict[str, tuple[object, str]] = {}  # node id -> (value, status name) last written
        self._heartbeat = 0
        self._dirty = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # start, stop and fault changes, one at a time
        self._publishing = asyncio.Lock()

    # --- lifetime ---

    async def start(self) -> None:
        """Listen (again, on the same port after a ``stop()``) with a freshly built address space."""
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        if self._server is not None:
            return
        server = Server(user_manager=_PasswordUsers(self._security.users)
                        if self._security is not None and self._security.users is not None else None)
        await server.init()
        server.set_endpoint(f"opc.tcp://{self._host}:{self._port}/heatgw/station")
        server.set_server_name("heatgw simulated station PLC")
        await server.set_application_uri(SERVER_URI)
        if self._security is not None:
            await server.load_certificate(str(self._security.certificate))
            await server.load_private_key(str(self._security.private_key))
            server.set_security_policy(self._security.policy_types())
            if self._security.users is not None:
                server.set_identity_tokens([ua.UserNameIdentityToken])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self._starts += 1
        for placeholder in range(self._starts):  # moves the station's namespace index on every restart
            await server.register_namespace(f"urn:heatgw:sim:placeholder:{placeholder}")
        self._index = await server.register_namespace(NAMESPACE_URI)
        server.iserver.attribute_service = _PlcAttributes(server.iserver.aspace, self)
        server.iserver.max_subscriptions = 1000 if self._faults.subscriptions else 0
        server.subscribe_server_callback(CallbackType.PreRead, self._pre_read)
        self._nodes, self._shown = {}, {}
        await self._build(server)
        await server.start()
        assert server.bserver is not None
        self._port = server.bserver.port
        self._server = server
        await self._publish()
        self._writer = asyncio.create_task(self._write_forever(), name="opcua-sim-writer")
        log.info("opcua server listening", extra={"fields": {"endpoint": self.endpoint, "namespace": self._index}})

    async def stop(self) -> None:
        """Close every session and the listener."""
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        server, self._server = self._server, None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if server is not None:
            await server.stop()
            log.info("opcua server stopped", extra={"fields": {"endpoint": self.endpoint}})

    async def __aenter__(self) -> StationOpcUaServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self._host}:{self._port}/heatgw/station"

    @property
    def namespace_index(self) -> int:
        """The station namespace's index in the running server (changes on every restart)."""
        return self._index

    @property
    def points(self) -> tuple[OpcPoint, ...]:
        return self._points

    # --- data ---

    @property
    def station(self) -> StationLike:
        return self._view.station

    @property
    def measurements(self) -> Measurements:
        """The snapshot the nodes show (or are about to: the writer task puts it on them)."""
        return self._measurements

    def update(self, measurements: Measurements) -> None:
        """Publish a new snapshot of the station's instruments; the writer task puts it on the nodes."""
        self._measurements = measurements
        self._circuits = self._view.circuit_measurements()
        self._heartbeat = (self._heartbeat + 1) & 0xFFFFFFFF
        self._dirty.set()

    def _snapshot(self) -> Snapshot:
        return self._view.snapshot(self._measurements, self._circuits)

    async def _write_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._publish()
            except Exception:  # noqa: BLE001 - the simulated PLC must keep serving whatever one value does
                log.exception("opcua server: publishing values failed; next update retries")

    async def _publish(self) -> None:
        """Write every value whose value or status changed since it was last written.

        One pass at a time: the writer task and a fault change both publish, and a pass that read
        the faults before they changed must not finish after the one that read them after.
        """
        async with self._publishing:
            await self._publish_pass()

    async def _publish_pass(self) -> None:
        server = self._server
        if server is None:
            return
        now = datetime.now(UTC)
        snapshot = self._snapshot()
        for point in self._points:
            if point.node_id in self._faults.removed:
                continue
            value = point.value(snapshot)
            status = self._faults.bad.get(point.node_id) or ("Good" if value is not None else "BadWaitingForInitialData")
            if self._shown.get(point.node_id) == (value, status):
                continue
            self._shown[point.node_id] = (value, status)
            variant = ua.Variant(value, ua.VariantType[point.kind.value]) if status == "Good" else ua.Variant()
            await server.write_attribute_value(self._nodes[point.node_id], ua.DataValue(
                variant, StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)),
                SourceTimestamp=now, ServerTimestamp=now))
        await server.write_attribute_value(self._nodes["Diagnostics.Heartbeat"], ua.DataValue(
            ua.Variant(self._heartbeat, ua.VariantType.UInt32), SourceTimestamp=now, ServerTimestamp=now))

    # --- writes (called by _PlcAttributes) ---

    def point_at(self, node_id: ua.NodeId) -> OpcPoint | None:
        if node_id.NamespaceIndex != self._index or not isinstance(node_id.Identifier, str):
            return None
        return self._by_id.get(node_id.Identifier)

    def refusal(self, point: OpcPoint, value: ua.DataValue) -> ua.StatusCodes | None:
        """Why the PLC refuses this value (a StatusCode), or ``None``: type and access are asyncua's."""
        if not point.writable or value.Value is None or value.Value.VariantType != ua.VariantType[point.kind.value]:
            return None  # asyncua answers BadUserAccessDenied / BadTypeMismatch itself
        bounds = point.bounds(self._view.bounds)
        number = value.Value.Value
        if bounds is not None and not bounds[0] <= float(number) <= bounds[1]:
            log.info("write refused", extra={"fields": {"node": point.node_id, "value": number,
                                                         "limits": f"{bounds[0]:g}..{bounds[1]:g}"}})
            return ua.StatusCodes.BadOutOfRange
        return None

    def apply_write(self, point: OpcPoint, value: object) -> None:
        assert point.row.command is not None
        if point.row.command == "reset_alarms" and not value:
            return  # only a rising edge resets
        command = PlcCommand(point.row.command, value if isinstance(value, bool) else float(value),  # type: ignore[arg-type]
                             point.row.circuit)
        apply_command(self._view.plc(command.circuit), command)
        log.info("plc write", extra={"fields": {"circuit": command.circuit, "setting": command.setting,
                                                "value": command.value}})
        self._dirty.set()  # the node shows what the PLC holds now (alarm reset reads back False)

    # --- faults ---

    @property
    def faults(self) -> OpcUaFaults:
        return self._faults

    async def set_faults(self, faults: OpcUaFaults) -> None:
        """Apply ``faults`` (replacing the current ones); removed nodes come back when no longer listed."""
        unknown = (set(faults.bad) | faults.removed) - set(self._by_id)
        if unknown:
            raise ValueError(f"unknown node(s) {', '.join(sorted(unknown))}")
        async with self._lock:
            previous, self._faults = self._faults, faults
            if faults.offline:
                await self._stop()
                return
            if self._server is None or previous.subscriptions != faults.subscriptions:
                await self._stop()
                await self._start()
                return
            async with self._publishing:  # no pass writes a node while it comes or goes
                for node_id in previous.removed - faults.removed:
                    await self._add_variable(self._by_id[node_id])
                for node_id in faults.removed - previous.removed:
                    await self._remove(self._server, node_id)
            await self._publish()
        log.info("opcua faults set", extra={"fields": {
            "delay_s": faults.delay_s, "bad": ",".join(sorted(faults.bad)) or "none",
            "removed": ",".join(sorted(faults.removed)) or "none", "subscriptions": faults.subscriptions}})

    async def slow_down(self) -> None:
        if self._faults.delay_s:
            await asyncio.sleep(self._faults.delay_s)

    async def _pre_read(self, _event: object, _dispatcher: object) -> None:
        await self.slow_down()

    async def _remove(self, server: Server, node_id: str) -> None:
        """Delete a node the way a compliant server reports it: monitored items get BadNodeIdUnknown.

        asyncua's own delete never tells the monitored items (it calls their async callback without
        awaiting it), so the notification a compliant server sends is written first, and the
        callbacks are unhooked before the delete so it has none left to call.
        """
        node = self._nodes.pop(node_id)
        await server.write_attribute_value(node, ua.DataValue(
            ua.Variant(), StatusCode=ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown), SourceTimestamp=datetime.now(UTC)))
        aspace = server.iserver.aspace
        for handle in list(aspace[node].attributes[ua.AttributeIds.Value].datachange_callbacks):
            aspace.delete_datachange_callback(handle)
        await server.delete_nodes([server.get_node(node)], recursive=True)
        self._shown.pop(node_id, None)

    # --- the address space ---

    async def _build(self, server: Server) -> None:
        idx = self._index
        root = await server.nodes.objects.add_object(ua.NodeId(ROOT_NAME, idx), ua.QualifiedName(ROOT_NAME, idx))
        self._folders: dict[tuple[str, ...], Node] = {(): root}
        for point in self._points:
            if point.node_id not in self._faults.removed:
                await self._add_variable(point)
        diagnostics = await self._folder(("Diagnostics",))
        heartbeat = await diagnostics.add_variable(ua.NodeId(HEARTBEAT_ID, idx), ua.QualifiedName("Heartbeat", idx),
                                                   ua.Variant(0, ua.VariantType.UInt32))
        self._nodes["Diagnostics.Heartbeat"] = heartbeat.nodeid
        await diagnostics.add_variable(ua.NodeId(PROGRAM_ID, idx), ua.QualifiedName("ProgramId", idx),
                                       ua.Variant("heatgw-sim station program", ua.VariantType.String))

    async def _folder(self, path: tuple[str, ...]) -> Node:
        if path not in self._folders:
            parent = await self._folder(path[:-1])
            self._folders[path] = await parent.add_object(ua.NodeId(".".join(path), self._index),
                                                          ua.QualifiedName(path[-1], self._index))
        return self._folders[path]

    async def _add_variable(self, point: OpcPoint) -> None:
        idx = self._index
        parent = await self._folder(point.path[:-1])
        kind = ua.VariantType[point.kind.value]
        start: object = False if point.kind is Kind.BOOLEAN else 0 if point.kind in (Kind.UINT16, Kind.UINT32) else 0.0
        variable = await parent.add_variable(ua.NodeId(point.node_id, idx), ua.QualifiedName(point.path[-1], idx),
                                             ua.Variant(start, kind))
        await variable.write_attribute(ua.AttributeIds.Description,
                                       ua.DataValue(ua.Variant(ua.LocalizedText(point.row.description))))
        if point.writable:
            await variable.set_writable()
        if (unit := point.unit) is not None:
            info = ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unit.unit_id,
                                    DisplayName=ua.LocalizedText(unit.symbol), Description=ua.LocalizedText(unit.description))
            await variable.add_property(ua.NodeId(f"{point.node_id}.EngineeringUnits", idx),
                                        ua.QualifiedName("EngineeringUnits", 0), info,
                                        datatype=ua.NodeId(ua.ObjectIds.EUInformation))
            low, high = unit.instrument_range
            await variable.add_property(ua.NodeId(f"{point.node_id}.EURange", idx), ua.QualifiedName("EURange", 0),
                                        ua.Range(Low=low, High=high), datatype=ua.NodeId(ua.ObjectIds.Range))
        self._nodes[point.node_id] = variable.nodeid
