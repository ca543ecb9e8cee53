"""Tags become driver points: equal tags of devices of one kind become one shared point."""

from __future__ import annotations

import pytest

from drivers.modbus.codec import BlockDecoder
from drivers.modbus.planner import ReadBlock
from drivers.modbus.points import DataType, Function, Point
from drivers.modbus.tagmap import point_labels


def test_a_points_key_is_its_tag_without_the_device_name_so_devices_of_one_kind_get_equal_points() -> None:
    assert point_labels("s001", ["s001_supply", "s001_return", "pump"]) == {
        "s001_supply": "supply", "s001_return": "return", "pump": "pump"}


def test_a_device_whose_tags_would_share_a_key_keeps_its_tag_names_as_keys() -> None:
    # "s001_flow" without its prefix is "flow", which the device also has.
    assert point_labels("s001", ["s001_flow", "flow"]) == {"s001_flow": "s001_flow", "flow": "flow"}


def test_a_decoder_names_the_values_with_the_keys_it_is_given_and_refuses_a_wrong_count() -> None:
    points = (Point("supply", Function.HOLDING, 0, DataType.INT16, scale=0.1),
              Point("return", Function.HOLDING, 1, DataType.INT16, scale=0.1))
    block = ReadBlock(Function.HOLDING, 0, 2, points)
    decoded = BlockDecoder(block, ["s002_supply", "s002_return"]).decode([700, 450])
    assert {key: result.value for key, result in decoded.items()} == {"s002_supply": 70.0, "s002_return": 45.0}
    with pytest.raises(ValueError, match="1 keys for 2 points"):
        BlockDecoder(block, ["s002_supply"])
