"""A minimal decoder of ``tf.train.Example`` protocol buffers, without TensorFlow.

Schema (tensorflow/core/example): ``Example{features=1: Features}``,
``Features{feature=1: map<string, Feature>}`` (map entries: key=1, value=2),
``Feature{bytes_list=1 | float_list=2 | int64_list=3}``, each list ``{value=1}`` with
floats and int64s packed or not.
"""

from __future__ import annotations

import struct

FeatureValue = list[bytes] | list[float] | list[int]

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class ProtobufDecodeError(ValueError):
    """The bytes are not a well-formed ``tf.train.Example``."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ProtobufDecodeError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 64:
            raise ProtobufDecodeError("varint longer than 10 bytes")


def _fields(data: bytes):
    """Yield ``(field_number, wire_type, value)``; value is int or bytes by wire type."""
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value, position = _varint(data, position)
        elif wire_type == _FIXED64:
            value, position = data[position : position + 8], position + 8
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire_type == _FIXED32:
            value, position = data[position : position + 4], position + 4
        else:
            raise ProtobufDecodeError(f"unsupported wire type {wire_type}")
        if position > len(data):
            raise ProtobufDecodeError("truncated field")
        yield number, wire_type, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_feature(data: bytes) -> FeatureValue:
    for number, _, payload in _fields(data):
        if not isinstance(payload, bytes):
            raise ProtobufDecodeError("a Feature's list must be a message")
        if number == 1:
            return [bytes(v) for n, _, v in _fields(payload) if n == 1]  # type: ignore[arg-type]
        if number == 2:
            floats: list[float] = []
            for n, wire_type, v in _fields(payload):
                if n != 1:
                    continue
                count = len(v) // 4 if wire_type == _LENGTH_DELIMITED else 1  # type: ignore[arg-type]
                floats.extend(struct.unpack(f"<{count}f", v))  # type: ignore[arg-type]
            return floats
        if number == 3:
            ints: list[int] = []
            for n, wire_type, v in _fields(payload):
                if n != 1:
                    continue
                if wire_type == _LENGTH_DELIMITED:
                    position = 0
                    while position < len(v):  # type: ignore[arg-type]
                        item, position = _varint(v, position)  # type: ignore[arg-type]
                        ints.append(_signed64(item))
                else:
                    ints.append(_signed64(v))  # type: ignore[arg-type]
            return ints
    return []


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into ``{feature name: list of values}``."""
    features: dict[str, FeatureValue] = {}
    for number, wire_type, payload in _fields(data):
        if number != 1 or wire_type != _LENGTH_DELIMITED:
            continue
        for entry_number, _, entry in _fields(payload):  # type: ignore[arg-type]
            if entry_number != 1:
                continue
            key, value = "", b""
            for n, _, v in _fields(entry):  # type: ignore[arg-type]
                if n == 1:
                    key = bytes(v).decode("utf-8")  # type: ignore[arg-type]
                elif n == 2:
                    value = v  # type: ignore[assignment]
            features[key] = _parse_feature(value)  # type: ignore[arg-type]
    return features
