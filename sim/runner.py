"""Runs a simulated station in accelerated real time behind its Modbus server, with a control port.

Each tick (``tick_s`` of wall time) advances the physics by the wall time that really elapsed
times ``speed`` and publishes the new measurements to the Modbus server. PLC writes need no tick:
the server applies them to ``station.plc`` as they arrive, and the next step uses them.

The control port speaks JSON lines over loopback TCP, one reply line per request line, so the
CLI, a demo script or a test can inject faults into a running simulator::

    {"cmd": "snapshot"}                       -> {"ok": true, "result": {measurements on the wire}}
    {"cmd": "status"}                         -> simulated time, speed, ports, all active faults
    {"cmd": "fault", "kind": "NAME", "args": {...}}   -> station.faults.NAME(**args)
    {"cmd": "comm", "unit": 1, "offline": true, "delay_s": 0.5,
     "exception_ranges": [{"function": 3, "address": 100, "count": 2}]}   (omitted keys unchanged)
    {"cmd": "stats", "reset": false}          -> request counts per unit and function code
    {"cmd": "opcua", "offline": false, "delay_s": 0.5, "bad": {"PrimarySide.Flow": "BadSensorFailure"},
     "removed": ["Tank.Level"], "subscriptions": true}   (the OPC UA server's faults; omitted keys unchanged)
    {"cmd": "clear"}                          -> clears comm faults and station faults

Every reply carries ``ok``; a failed request gets ``"error"`` instead of ``"result"``. No input
can stop the runner: a bad line only earns an error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sim.modbus_server import UNITS, CommFaults, ExceptionRange, SerialLine, StationModbusServer
from sim.station_view import StationLike
from sim.registers import DEFAULT_MAP, RegisterMap, WordOrder

if TYPE_CHECKING:  # the OPC UA server (and asyncua, ~30 MB) is loaded only by a runner that serves it
    from sim.opcua_server import OpcUaFaults, OpcUaSecurity, StationOpcUaServer

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
JsonObject = dict[str, Any]


class RunnableStation(StationLike, Protocol):
    """The part of ``sim.station.Station`` the runner drives."""

    @property
    def now(self) -> datetime: ...

    @property
    def faults(self) -> Any: ...

    def step(self, dt_s: float) -> None: ...


class CommandError(Exception):
    """A control request that cannot be carried out; its message goes back to the client."""


class SimRunner:
    """A station, its Modbus server (and OPC UA server) and its control port, for an ``async with``.

    ``port=0``/``control_port=0`` bind free ports (read them back from ``server.port`` and
    ``control_port``); ``control_port=None`` runs without a control port. ``opcua_port`` serves
    the PLC over OPC UA as well (0: a free port, read back from ``opcua.port``).
    """

    def __init__(
        self,
        station: RunnableStation,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        meter_port: int | None = None,
        meter_word_order: WordOrder = "big",
        meter_serial: SerialLine | None = None,
        speed: float = 600.0,
        tick_s: float = 0.2,
        control_port: int | None = 0,
        register_map: RegisterMap = DEFAULT_MAP,
        opcua_port: int | None = None,
        opcua_security: OpcUaSecurity | None = None,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive number, got {speed}")
        if not 0 < tick_s <= 10:
            raise ValueError(f"tick_s must be within (0, 10] s, got {tick_s}")
        self.station = station
        self.speed = speed
        self.tick_s = tick_s
        self._host = host
        self._control_port = control_port
        self.server = StationModbusServer(
            station, host=host, port=port, meter_port=meter_port, meter_word_order=meter_word_order,
            meter_serial=meter_serial, register_map=register_map,
        )
        self.opcua: StationOpcUaServer | None = None
        if opcua_port is not None:
            from sim.opcua_server import StationOpcUaServer

            self.opcua = StationOpcUaServer(station, host=host, port=opcua_port, register_map=register_map,
                                            security=opcua_security)
        self._control: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._commands: dict[str, Callable[[JsonObject], Any]] = {
            "opcua": self._cmd_opcua,
            "snapshot": self._cmd_snapshot,
            "status": self._cmd_status,
            "fault": self._cmd_fault,
            "comm": self._cmd_comm,
            "stats": self._cmd_stats,
            "clear": self._cmd_clear,
        }

    # --- lifetime ---

    async def __aenter__(self) -> SimRunner:
        try:
            await self.server.start()
            if self.opcua is not None:
                await self.opcua.start()
            if self._control_port is not None:
                self._control = await asyncio.start_server(
                    self._serve_client, self._host, self._control_port, limit=MAX_LINE
                )
            self._ticker = asyncio.create_task(self._tick_forever(), name="sim-ticker")
        except BaseException:
            await self.close()
            raise
        log.info("simulator running", extra={"fields": {
            "speed": self.speed, "tick_s": self.tick_s, "control_port": self.control_port, **self.ports}})
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop ticking, close the control port and the Modbus server. Safe to call twice."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            # a physics failure was logged when it happened and is re-raised by wait()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ticker
        control, self._control = self._control, None
        if control is not None:
            control.close()
            for writer in list(self._clients):  # Server.wait_closed waits for them (Python >= 3.12)
                writer.close()
            await control.wait_closed()
        await self.server.stop()
        if self.opcua is not None:
            await self.opcua.stop()

    async def wait(self) -> None:
        """Return only if the physics fails (re-raising its error); for ``heatgw sim run``."""
        if self._ticker is None:
            raise RuntimeError("runner is not running")
        await asyncio.shield(self._ticker)

    @property
    def ports(self) -> dict[str, int | str]:
        """The Modbus ports, and ``opcua_port`` when the PLC is served over OPC UA too."""
        ports = dict(self.server.ports)
        if self.opcua is not None:
            ports["opcua_port"] = self.opcua.port
        return ports

    @property
    def control_port(self) -> int | None:
        if self._control is None:
            return None
        return self._control.sockets[0].getsockname()[1]

    # --- physics ---

    async def _tick_forever(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            try:
                self.tick((now - last) * self.speed)
            except Exception:
                log.exception("station step failed, simulation stopped; the Modbus server keeps the last values")
                raise
            last = now

    def tick(self, sim_dt_s: float) -> None:
        """Advance the station by ``sim_dt_s`` simulated seconds and publish its measurements."""
        if sim_dt_s > 0:
            self.station.step(sim_dt_s)
        measurements = self.station.measurements()
        self.server.update(measurements)
        if self.opcua is not None:
            self.opcua.update(measurements)

    # --- control port ---

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: answer once, then hang up
                    await _reply(writer, _error(f"line longer than {MAX_LINE} bytes"))
                    break
                if not line:
                    break
                await _reply(writer, await self.handle_line(line))
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def handle_line(self, line: bytes) -> JsonObject:
        """One request line -> one reply object; never raises."""
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(f"not JSON: {exc}")
        return await self.handle(request)

    async def handle(self, request: Any) -> JsonObject:
        """Carry out one decoded control request; never raises."""
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error('expected a JSON object with a "cmd" string')
        command = self._commands.get(request["cmd"])
        if command is None:
            return _error(f"unknown cmd {request['cmd']!r}; known: {', '.join(self._commands)}")
        try:
            result = command(request)
            if asyncio.iscoroutine(result):
                result = await result
            return {"ok": True, "result": _jsonable(result)}
        except (CommandError, ValueError, TypeError, KeyError) as exc:
            return _error(str(exc) or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a control request must never take the simulator down
            log.exception("control request failed", extra={"fields": {"cmd": request["cmd"]}})
            return _error(f"{type(exc).__name__}: {exc}")

    def _cmd_snapshot(self, _request: JsonObject) -> Any:
        """The measurements the Modbus registers show right now (refreshed every tick)."""
        return dataclasses.asdict(self.server.measurements)

    def _cmd_status(self, _request: JsonObject) -> Any:
        return {
            "sim_time": self.station.now.isoformat(),
            "speed": self.speed,
            **self.ports,
            "control_port": self.control_port,
            "comm": {str(unit): _faults_json(self.server.comm_faults(unit)) for unit in UNITS},
            **({"opcua": _opcua_json(self.opcua.faults)} if self.opcua is not None else {}),
            "faults": self.station.faults.active(),
        }

    def _cmd_fault(self, request: JsonObject) -> Any:
        kind = request.get("kind")
        args = request.get("args", {})
        if not isinstance(kind, str) or kind.startswith("_"):
            raise CommandError('fault needs "kind", the name of a station.faults method')
        if not isinstance(args, dict):
            raise CommandError('"args" must be an object of keyword arguments')
        method = getattr(self.station.faults, kind, None)
        if not callable(method):
            raise CommandError(f"unknown fault kind {kind!r}")
        result = method(**args)
        log.info("fault injected", extra={"fields": {"kind": kind, **args}})
        return result

    def _cmd_comm(self, request: JsonObject) -> Any:
        unit = request.get("unit")
        if not isinstance(unit, int) or isinstance(unit, bool):
            raise CommandError('comm needs an integer "unit"')
        current = self.server.comm_faults(unit)
        changes: dict[str, Any] = {}
        if "offline" in request:
            if not isinstance(request["offline"], bool):
                raise CommandError('"offline" must be true or false')
            changes["offline"] = request["offline"]
        if "delay_s" in request:
            delay = request["delay_s"]
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                raise CommandError('"delay_s" must be a number of seconds')
            changes["delay_s"] = float(delay)
        if "exception_ranges" in request:
            changes["exception_ranges"] = _parse_ranges(request["exception_ranges"])
        faults = dataclasses.replace(current, **changes)
        self.server.set_comm_faults(unit, faults)
        return _faults_json(faults)

    async def _cmd_opcua(self, request: JsonObject) -> Any:
        if self.opcua is None:
            raise CommandError("this simulator serves no OPC UA (start it with --opcua-port)")
        changes: dict[str, Any] = {}
        for key in ("offline", "subscriptions"):
            if key in request:
                if not isinstance(request[key], bool):
                    raise CommandError(f'"{key}" must be true or false')
                changes[key] = request[key]
        if "delay_s" in request:
            delay = request["delay_s"]
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                raise CommandError('"delay_s" must be a number of seconds')
            changes["delay_s"] = float(delay)
        if "bad" in request:
            bad = request["bad"]
            if not isinstance(bad, dict) or not all(isinstance(v, str) for v in bad.values()):
                raise CommandError('"bad" must map node ids to StatusCode names, e.g. {"PrimarySide.Flow": "BadSensorFailure"}')
            changes["bad"] = dict(bad)
        if "removed" in request:
            removed = request["removed"]
            if not isinstance(removed, list) or not all(isinstance(v, str) for v in removed):
                raise CommandError('"removed" must be a list of node ids')
            changes["removed"] = frozenset(removed)
        faults = dataclasses.replace(self.opcua.faults, **changes)
        await self.opcua.set_faults(faults)
        return _opcua_json(faults)

    def _cmd_stats(self, request: JsonObject) -> Any:
        counts: dict[str, dict[str, int]] = {}
        for (unit, function), count in sorted(self.server.request_counts().items()):
            counts.setdefault(str(unit), {})[str(function)] = count
        if request.get("reset"):
            self.server.reset_request_counts()
        return {"requests": counts, "total": sum(sum(c.values()) for c in counts.values())}

    async def _cmd_clear(self, _request: JsonObject) -> Any:
        self.server.clear_comm_faults()
        if self.opcua is not None:
            from sim.opcua_server import HEALTHY

            await self.opcua.set_faults(HEALTHY)
        self.station.faults.clear()
        log.info("all faults cleared")
        return None


async def send_control(host: str, port: int, request: JsonObject, timeout: float = 5.0) -> JsonObject:
    """Send one request to a runner's control port and return its reply (the CLI's client)."""

    async def exchange() -> JsonObject:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if not line:
            raise ConnectionError("control port closed without a reply")
        return json.loads(line)

    return await asyncio.wait_for(exchange(), timeout)


def _parse_ranges(value: Any) -> tuple[ExceptionRange, ...]:
    if not isinstance(value, list):
        raise CommandError('"exception_ranges" must be a list of {"function", "address", "count"} objects')
    ranges = []
    for item in value:
        if not isinstance(item, dict) or not {"function", "address"} <= item.keys() <= {"function", "address", "count"}:
            raise CommandError(f'bad exception range {item!r}: keys are "function", "address" and optional "count"')
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in item.values()):
            raise CommandError(f"bad exception range {item!r}: values must be integers")
        ranges.append(ExceptionRange(item["function"], item["address"], item.get("count", 1)))
    return tuple(ranges)


def _faults_json(faults: CommFaults) -> JsonObject:
    return {
        "offline": faults.offline,
        "delay_s": faults.delay_s,
        "exception_ranges": [
            {"function": r.function_code, "address": r.address, "count": r.count} for r in faults.exception_ranges
        ],
    }


def _opcua_json(faults: OpcUaFaults) -> JsonObject:
    return {"offline": faults.offline, "delay_s": faults.delay_s, "bad": dict(faults.bad),
            "removed": sorted(faults.removed), "subscriptions": faults.subscriptions}


def _jsonable(value: Any) -> Any:
    """Plain JSON: non-finite floats become null, enums their value, other objects their repr."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(getattr(value, "value", value))


async def _reply(writer: asyncio.StreamWriter, reply: JsonObject) -> None:
    writer.write(json.dumps(reply, allow_nan=False).encode() + b"\n")
    await writer.drain()


def _error(reason: str) -> JsonObject:
    return {"ok": False, "error": reason}
