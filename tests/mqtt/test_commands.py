"""The command registry: every way a command is refused, with its reason, and nothing executed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.mqtt.commands import (
    AlarmAckArgs,
    Command,
    CommandRegistry,
    Refused,
    ReplayArgs,
    SetpointOffsetArgs,
    WriteArgs,
)
from gateway.samples import Value

NOW = 1_795_456_034.0


class Calls:
    """A handler that records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Command]] = []

    async def __call__(self, args: Any, command: Command) -> Mapping[str, Value] | None:
        self.calls.append((args, command))
        if isinstance(args, WriteArgs) and args.tag == "locked":
            raise Refused("tag 'locked' is not writable")
        return {"applied": True}


def registry(handler: Calls | None = None) -> CommandRegistry:
    commands = CommandRegistry(clock=lambda: NOW, handler_timeout_s=0.2)
    commands.register("setpoint_offset", SetpointOffsetArgs, handler, unavailable="controller not running")
    commands.register("alarm_ack", AlarmAckArgs, unavailable="alarm engine not running")
    commands.register("write", WriteArgs, handler)
    commands.register("replay", ReplayArgs, handler)
    return commands


def envelope(**args: Any) -> dict[str, Any]:
    return {"id": "c-1", "origin": "dispatch/zhang.wei", "expires": NOW + 300, "args": args}


async def answer(commands: CommandRegistry, name: str, payload: Any) -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return json.loads(await commands.handle(name, raw))


async def test_a_valid_command_runs_once_and_is_answered_with_its_id() -> None:
    calls = Calls()
    reply = await answer(registry(calls), "setpoint_offset", envelope(offset_k=-2.0, duration_s=7200))
    assert reply == {"id": "c-1", "ok": True, "result": {"applied": True}, "ts": NOW}
    args, command = calls.calls[0]
    assert args == SetpointOffsetArgs(offset_k=-2.0, duration_s=7200)
    assert (command.origin, command.expires) == ("dispatch/zhang.wei", NOW + 300)


@pytest.mark.parametrize("name, payload, reason", [
    ("write", b"{not json",
     "malformed JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("write", b"[" * 5000, "payload too large: 5000 bytes, at most 4096"),
    ("reboot", envelope(), "unknown command 'reboot' (known: alarm_ack, replay, setpoint_offset, write)"),
    ("write", [1, 2], "payload: Input should be a valid dictionary or instance of Envelope"),
    ("write", {"id": "c-1", "origin": "x", "args": {}}, "expires: Field required"),
    ("write", {**envelope(tag="a", value=1), "priority": 1}, "priority: Extra inputs are not permitted"),
    ("write", {**envelope(tag="a", value=1), "expires": "tomorrow"}, "expires: Input should be a valid number"),
    ("write", {**envelope(tag="a", value=1), "expires": 1e300},
     "expires: Input should be less than or equal to 100000000000"),
    ("setpoint_offset", envelope(offset_k=20.5, duration_s=60), "offset_k: must be between -20 and 20"),
    ("setpoint_offset", envelope(offset_k=1, duration_s=0), "duration_s: must be above 0 and at most 604800"),
    ("setpoint_offset", envelope(offset_k=1, duration_s=604801), "duration_s: must be above 0 and at most 604800"),
    ("setpoint_offset", envelope(offset_k="1", duration_s=60), "offset_k: Input should be a valid number"),
    ("setpoint_offset", envelope(offset_k=1), "duration_s: Field required"),
    ("write", envelope(tag="supply_setpoint", value=50, force=True), "force: Extra inputs are not permitted"),
    ("write", envelope(tag="Supply Setpoint", value=50), "tag: String should match pattern '^[a-z][a-z0-9_]{0,62}$'"),
    ("write", {**envelope(tag="supply_setpoint", value=50), "expires": NOW - 30},
     "expired at 2026-11-23T17:46:44+00:00 (30 s ago)"),
    ("write", {**envelope(tag="supply_setpoint", value=50), "expires": NOW + 86_401},
     "expires more than 86400 s ahead: commands must be short-lived"),
    ("write", envelope(tag="locked", value=1), "tag 'locked' is not writable"),
    ("replay", envelope(from_seq=0, to_seq=5), "from_seq: Input should be greater than or equal to 1"),
    ("replay", envelope(from_seq=9, to_seq=5), "to_seq: must be from_seq <= to_seq < from_seq + 500"),
    ("replay", envelope(from_seq=1, to_seq=501), "to_seq: must be from_seq <= to_seq < from_seq + 500"),
    ("replay", envelope(from_seq="1", to_seq=5), "from_seq: Input should be a valid integer"),
])
async def test_refusals_say_why_and_execute_nothing(name: str, payload: Any, reason: str) -> None:
    calls = Calls()
    reply = await answer(registry(calls), name, payload)
    assert reply["ok"] is False
    assert reply["reason"] == reason
    executed = [c for c in calls.calls if c[0] != WriteArgs(tag="locked", value=1)]
    assert executed == [], "a refused command must not reach its handler"


async def test_the_id_is_echoed_even_when_the_envelope_is_refused() -> None:
    reply = await answer(registry(), "write", {"id": "c-9", "origin": "x", "args": {}})
    assert (reply["id"], reply["ok"]) == ("c-9", False)
    reply = await answer(registry(), "write", b"{oops")
    assert (reply["id"], reply["ok"]) == (None, False)


async def test_a_declared_command_without_a_provider_is_refused_until_provided() -> None:
    calls = Calls()
    commands = registry()
    reply = await answer(commands, "setpoint_offset", envelope(offset_k=1.0, duration_s=60))
    assert (reply["ok"], reply["reason"]) == (False, "controller not running")
    reply = await answer(commands, "alarm_ack", {**envelope(alarm_id="overtemp"), "id": "c-2"})
    assert (reply["ok"], reply["reason"]) == (False, "alarm engine not running")
    commands.provide("alarm_ack", calls)
    reply = await answer(commands, "alarm_ack", {**envelope(alarm_id="overtemp"), "id": "c-3"})
    assert reply["ok"] is True and calls.calls[0][0] == AlarmAckArgs(alarm_id="overtemp")


async def test_a_redelivered_command_is_answered_again_but_executed_once() -> None:
    calls = Calls()
    commands = registry(calls)
    first = await commands.handle("write", json.dumps(envelope(tag="supply_setpoint", value=55)).encode())
    second = await commands.handle("write", json.dumps(envelope(tag="supply_setpoint", value=55)).encode())
    assert first == second
    assert len(calls.calls) == 1


async def test_a_handler_that_hangs_or_fails_still_gets_an_answer() -> None:
    async def hang(args: Any, command: Command) -> None:
        await asyncio.sleep(10)

    async def crash(args: Any, command: Command) -> None:
        raise RuntimeError("bug")

    commands = registry()
    commands.provide("setpoint_offset", hang)
    reply = await answer(commands, "setpoint_offset", envelope(offset_k=1.0, duration_s=60))
    assert reply["reason"] == "no answer within 0.2 s: the outcome is unknown"
    commands.provide("setpoint_offset", crash)
    reply = await answer(commands, "setpoint_offset", {**envelope(offset_k=1.0, duration_s=60), "id": "c-2"})
    assert reply["reason"] == "internal error, see the gateway log"
