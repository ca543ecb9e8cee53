"""Commands from dispatch: declared, checked, bounded, expiring, logged and always answered.

A command is one entry in a ``CommandRegistry``: a name, a pydantic model of its arguments (the
schema and the bounds), and an async handler. Adding a command is declaring those three things;
everything else (envelope, expiry, refusals, logging, duplicate delivery) is shared. Handlers
that belong to parts not built yet (the controller's setpoint offset, the alarm engine's
acknowledge) are declared now and provided later with ``provide``; until then the command is
refused with a reason such as "controller not running".

The envelope is ``{"id", "origin", "expires", "args"}``. In order, a command is refused when:
its payload is too large or not JSON, the name is unknown, the envelope is invalid, it has
expired or expires implausibly far ahead (dispatch commands are short-lived by design), its
arguments fail the schema, or the handler refuses (the write queue's reason, for instance).
A refused command changed nothing. Every command and every answer is logged with its origin.

MQTT QoS 1 may deliver a command twice; the second delivery of an ``id`` is answered with the
first answer and not executed again. Who may publish commands at all is the broker's ACL (docs: dispatch/broker-security.md): the ``origin`` is what dispatch says about itself, logged for the record, not a proof.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import annotated_types

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.alarms.settings import AlarmSettings
from gateway.control.settings import DispatchSettings
from gateway.logs import kv
from gateway.mqtt.payloads import REPLAY_MAX_MESSAGES, result
from gateway.samples import Value
from gateway.writes import WriteQueue

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
MAX_LIFETIME_S = 86_400.0
HANDLER_TIMEOUT_S = 30.0
REMEMBERED_IDS = 1024


class Refused(Exception):
    """Raised by a handler that will not do what was asked; ``str()`` is the reason sent back."""


class CommandArgs(BaseModel):
    """Base of every argument model: no extra keys, no silent type coercion ("5" is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def between(low: float, high: float, *, low_inclusive: bool = True) -> AfterValidator:
    """Annotated metadata: a finite number in ``[low, high]`` (or ``(low, high]``), refused with one
    message a dispatcher understands, instead of pydantic's one-bound-at-a-time wording."""

    def check(value: float) -> float:
        above_low = value >= low if low_inclusive else value > low
        if not (math.isfinite(value) and above_low and value <= high):
            wording = f"between {low:g} and {high:g}" if low_inclusive else f"above {low:g} and at most {high:g}"
            raise PydanticCustomError("out_of_range", f"must be {wording}")
        return value

    return AfterValidator(check)


def ceiling(settings: type[BaseModel], field: str) -> float:
    """The largest value any station may configure for ``settings.field`` (its ``le`` bound).

    A command's schema refuses only what no station could accept; the station's own bound (say
    ``max_offset_k: 8``) is checked by the part that owns the setting, which reads it as it is
    now, also after a reload. Both read one source: the settings model.
    """
    for constraint in settings.model_fields[field].metadata:
        if isinstance(constraint, annotated_types.Le):
            return float(constraint.le)
    raise LookupError(f"{settings.__name__}.{field} declares no upper bound")


MAX_OFFSET_K = ceiling(DispatchSettings, "max_offset_k")
MAX_OFFSET_DURATION_S = ceiling(DispatchSettings, "max_duration_s")
MAX_SHELVE_S = ceiling(AlarmSettings, "max_shelve_s")


class SetpointOffsetArgs(CommandArgs):
    """Dispatch shifts the supply-temperature curve for a while (e.g. ahead of a cold night).

    The station's ``controller.dispatch`` bounds are applied by the controller (see
    ``ControllerTask.set_dispatch_offset``); this schema only refuses what no station allows.
    """

    offset_k: Annotated[float, between(-MAX_OFFSET_K, MAX_OFFSET_K)]
    duration_s: Annotated[float, between(0, MAX_OFFSET_DURATION_S, low_inclusive=False)]


class OutdoorArgs(CommandArgs):
    """Dispatch's outdoor temperature, the controller's first fallback when the station sensor fails."""

    value_c: Annotated[float, between(-50, 50)]


class AlarmAckArgs(CommandArgs):
    """An operator has seen an alarm."""

    alarm_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class AlarmShelveArgs(CommandArgs):
    """An operator hides a nuisance alarm for a while; it comes back by itself. The engine also
    holds it to the station's ``alarms.max_shelve_s``."""

    alarm_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    duration_s: Annotated[float, between(0, MAX_SHELVE_S, low_inclusive=False)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class WriteArgs(CommandArgs):
    """Write one tag, through the write queue and its limits, with read-back."""

    tag: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    value: bool | int | float  # as sent: 200 stays 200 in the answer and the log


class ReplayArgs(CommandArgs):
    """A historian asks for ``from_seq..to_seq`` again: a hole it saw that did not fill by itself.

    Bounded (``REPLAY_MAX_MESSAGES``, the contract's) so that one request is sent within a
    command's time limit and never holds more than that many messages in memory.
    """

    from_seq: Annotated[int, Field(ge=1)]
    to_seq: Annotated[int, Field(ge=1)]

    @field_validator("to_seq")
    @classmethod
    def _bounded(cls, to_seq: int, info: ValidationInfo) -> int:
        first = info.data.get("from_seq")
        if first is not None and not first <= to_seq < first + REPLAY_MAX_MESSAGES:
            raise PydanticCustomError(
                "replay_range", f"must be from_seq <= to_seq < from_seq + {REPLAY_MAX_MESSAGES}")
        return to_seq


class Envelope(BaseModel):
    """What every command carries besides its arguments."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    origin: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    expires: float = Field(ge=0, le=1e11, allow_inf_nan=False)  # POSIX seconds; 1e11 is the year 5138
    args: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Command:
    """A command that passed the envelope checks: who asked, until when."""

    name: str
    id: str
    origin: str
    expires: float


A = TypeVar("A", bound=CommandArgs)
Handler = Callable[[A, Command], Awaitable[Mapping[str, Value] | None]]
"""Does the work; returns details for the answer (or None), raises ``Refused`` to refuse."""


@dataclass
class CommandSpec(Generic[A]):
    """One declared command."""

    args: type[A]
    handler: Handler[A] | None
    unavailable: str  # the reason given while no handler is provided


class CommandRegistry:
    """The commands this gateway understands, and the one place they are checked and answered."""

    def __init__(self, *, clock: Callable[[], float] = time.time, handler_timeout_s: float = HANDLER_TIMEOUT_S) -> None:
        self._specs: dict[str, CommandSpec[Any]] = {}
        self._clock = clock
        self._handler_timeout_s = handler_timeout_s
        self._answered: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()  # -> (expires, answer)

    def register(self, name: str, args: type[A], handler: Handler[A] | None = None, *,
                 unavailable: str = "not available") -> None:
        """Declare a command; without a handler it is refused with ``unavailable`` until ``provide``."""
        self._specs[name] = CommandSpec(args, handler, unavailable)

    def provide(self, name: str, handler: Handler[Any] | None) -> None:
        """Give a declared command its handler (or take it away when its provider stops)."""
        self._specs[name].handler = handler

    @property
    def names(self) -> list[str]:
        return sorted(self._specs)

    async def handle(self, name: str, payload: bytes) -> bytes:
        """Check and run one command; returns the answer payload. Never raises."""
        now = self._clock()
        try:
            data = self._parse(payload)
        except Refused as exc:
            log.warning("command refused", extra=kv(command=name, id=None, reason=str(exc)))
            return result(None, False, str(exc), now, None)
        command_id = _command_id(data)
        try:
            envelope = self._envelope(name, data)
        except Refused as exc:
            log.warning("command refused", extra=kv(command=name, id=command_id, reason=str(exc)))
            return result(command_id, False, str(exc), now, None)
        command = Command(name, envelope.id, envelope.origin, envelope.expires)
        log.info("command received", extra=kv(command=name, id=command.id, origin=command.origin,
                                               expires=_iso(command.expires), args=json.dumps(envelope.args)))
        earlier = self._answered.get((name, command.id))
        if earlier is not None:
            log.warning("command delivered again: answered as before, not executed", extra=kv(
                command=name, id=command.id, origin=command.origin))
            return earlier[1]
        ok, reason, detail = await self._execute(command, envelope, now)
        answer = result(command.id, ok, reason, self._clock(), detail)
        if ok:
            log.info("command done", extra=kv(command=name, id=command.id, origin=command.origin,
                                              result=json.dumps(detail) if detail else ""))
        else:
            log.warning("command refused", extra=kv(command=name, id=command.id, origin=command.origin, reason=reason))
        self._remember(command, answer, now)
        return answer

    def busy(self, payload: bytes, waiting: int) -> bytes:
        """The answer to a command that arrives while ``waiting`` commands already wait their turn:
        refused, not executed, so dispatch may send it again; never a silence. Cheap (no logging:
        the caller counts these), because it answers a flood."""
        try:
            command_id = _command_id(self._parse(payload))
        except Refused:
            command_id = None
        return result(command_id, False, f"busy, retry later: {waiting} commands are waiting", self._clock(), None)

    @staticmethod
    def _parse(payload: bytes) -> Any:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Refused(f"payload too large: {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
        try:
            return json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise Refused(f"malformed JSON: {exc}") from None

    def _envelope(self, name: str, data: Any) -> Envelope:
        if name not in self._specs:
            raise Refused(f"unknown command {name!r} (known: {', '.join(self.names)})")
        try:
            return Envelope.model_validate(data)
        except ValidationError as exc:
            raise Refused(_describe(exc)) from None

    async def _execute(self, command: Command, envelope: Envelope,
                       now: float) -> tuple[bool, str, Mapping[str, Value] | None]:
        """Expiry, arguments, handler: (ok, reason, details)."""
        if command.expires <= now:
            return False, f"expired at {_iso(command.expires)} ({now - command.expires:.0f} s ago)", None
        if command.expires > now + MAX_LIFETIME_S:
            return False, f"expires more than {MAX_LIFETIME_S:.0f} s ahead: commands must be short-lived", None
        spec = self._specs[command.name]
        try:
            args = spec.args.model_validate(envelope.args)
        except ValidationError as exc:
            return False, _describe(exc), None
        if spec.handler is None:
            return False, spec.unavailable, None
        try:
            async with asyncio.timeout(self._handler_timeout_s):
                detail = await spec.handler(args, command)
        except Refused as exc:
            return False, str(exc), None
        except TimeoutError:
            return False, f"no answer within {self._handler_timeout_s:g} s: the outcome is unknown", None
        except Exception:  # noqa: BLE001 - a buggy handler must still get an answer out
            log.exception("command handler failed", extra=kv(command=command.name, id=command.id))
            return False, "internal error, see the gateway log", None
        return True, "", detail

    def _remember(self, command: Command, answer: bytes, now: float) -> None:
        """Keep answers until their command expires, so a redelivery is not executed twice."""
        for known, (expires, _) in list(self._answered.items()):
            if expires > now and len(self._answered) < REMEMBERED_IDS:
                break
            del self._answered[known]
        self._answered[(command.name, command.id)] = (command.expires, answer)


def _command_id(data: Any) -> str | None:
    """The command's id, echoed whenever there is one, even on an envelope that fails: dispatch
    correlates answers by it."""
    return data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _describe(exc: ValidationError) -> str:
    """``field: message`` for each problem, the way a dispatcher reads it."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def standard_commands(writes: WriteQueue) -> CommandRegistry:
    """The commands every gateway has. The controller provides ``setpoint_offset`` and ``outdoor``,
    the alarm engine ``alarm_ack`` and ``alarm_shelve``, when they run; the MQTT publisher adds
    ``replay``."""
    registry = CommandRegistry()
    registry.register("setpoint_offset", SetpointOffsetArgs, unavailable="controller not running")
    registry.register("outdoor", OutdoorArgs, unavailable="controller not running")
    registry.register("alarm_ack", AlarmAckArgs, unavailable="alarm engine not running")
    registry.register("alarm_shelve", AlarmShelveArgs, unavailable="alarm engine not running")

    async def write(args: WriteArgs, command: Command) -> Mapping[str, Value]:
        outcome = await writes.write(args.tag, args.value, command.origin)
        if not outcome.accepted:
            raise Refused(outcome.reason)
        return {"readback": outcome.readback}

    registry.register("write", WriteArgs, write)
    return registry
