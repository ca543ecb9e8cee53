"""OPC UA values to samples and back: StatusCode to quality, timestamps, the node's declared type.

Pure functions, so the rules are tested without a server:

* Good -> ``Quality.GOOD`` (then the tag's plausible ``range`` may still make it BAD
  ``out_of_range``, as for Modbus: 850 degC from an open PT1000 stays visible);
* Uncertain and Bad -> ``Quality.BAD`` with the StatusCode's name as the reason
  (``BadSensorFailure``, ``UncertainLastUsableValue``). The gateway has no "uncertain" quality:
  a value its own source does not vouch for is not one the controller may act on. An uncertain
  value is kept in the sample for the operator to see; a bad one has none.
* the timestamp is the source timestamp (when the PLC sampled it), else the server's, else the
  time the gateway received it.
"""

from __future__ import annotations

import math
from datetime import datetime

from asyncua import ua

from drivers.base import Quality, Reason
from drivers.opcua.config import OpcUaTag
from gateway.acquisition.device import Unrepresentable
from gateway.samples import Sample, Value

_INTEGER_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOATS = (ua.VariantType.Float, ua.VariantType.Double)


def status_name(code: ua.StatusCode | None) -> str:
    """``BadSensorFailure`` for its code (the name the specification gives, stable across libraries)."""
    if code is None:
        return "Good"
    try:
        return str(code.name)
    except (KeyError, AttributeError, ValueError):
        return f"0x{int(code.value):08X}"


def posix(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def sample_of(tag_name: str, tag: OpcUaTag, data: ua.DataValue, received: float) -> Sample:
    """The sample a DataValue (from a notification or a Read) stands for."""
    timestamp = posix(data.SourceTimestamp) or posix(data.ServerTimestamp) or received
    code = data.StatusCode
    value = _plain(data.Value.Value if data.Value is not None else None)
    if code is not None and not code.is_good():
        kept = value if code.is_uncertain() else None
        return Sample(tag_name, kept, timestamp, Quality.BAD, status_name(code))
    if value is None:
        return Sample(tag_name, None, timestamp, Quality.BAD, Reason.NO_VALUE.value)
    limits = tag.range
    if limits is not None and not isinstance(value, bool) and not limits[0] <= value <= limits[1]:
        return Sample(tag_name, value, timestamp, Quality.BAD, Reason.OUT_OF_RANGE.value)
    return Sample(tag_name, value, timestamp)


def _plain(raw: object) -> Value:
    """A scalar the bus carries; arrays, strings and structures are not process values."""
    if isinstance(raw, bool) or raw is None:
        return raw
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else None
    return None


def to_variant(value: float | bool, declared: ua.VariantType) -> ua.Variant:
    """``value`` in the type the node declares, or ``Unrepresentable`` (a Float node refuses a Double)."""
    if declared is ua.VariantType.Boolean:
        if value not in (0, 1):
            raise Unrepresentable(f"the node is Boolean: {value!r} is neither 0 nor 1")
        return ua.Variant(bool(value), declared)
    if declared in _FLOATS:
        if declared is ua.VariantType.Float and abs(float(value)) > 3.4e38:
            raise Unrepresentable(f"the node is Float: {value!r} is too large")
        return ua.Variant(float(value), declared)
    if declared in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[declared]
        if float(value) != int(value):
            raise Unrepresentable(f"the node is {declared.name}: {value!r} is not a whole number")
        if not low <= int(value) <= high:
            raise Unrepresentable(f"the node is {declared.name}: {value!r} is outside {low}..{high}")
        return ua.Variant(int(value), declared)
    raise Unrepresentable(f"the node's type {declared.name} is not a number the gateway writes")
