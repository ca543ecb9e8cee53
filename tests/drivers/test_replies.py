"""Replies to writes are believed only when they echo what was written."""

from __future__ import annotations

import pytest
from pymodbus.pdu.register_message import MaskWriteRegisterRequest

from drivers.modbus.errors import BadReply
from drivers.modbus.replies import parse_reply, request_pdu


def test_a_mask_write_is_believed_only_when_its_reply_echoes_both_masks() -> None:
    request = request_pdu(MaskWriteRegisterRequest(address=10, and_mask=0xFFFE, or_mask=0x0001))
    assert parse_reply(request, request) is None
    with pytest.raises(BadReply, match="write echo 000afffe0000 for 000afffe0001"):
        parse_reply(request, request[:-1] + b"\x00")
