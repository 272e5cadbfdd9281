"""TFRecord framing without TensorFlow: CRC32C, writing, indexing, damaged files."""

import struct

import pytest

from litemeta.data.tfrecord import (
    CorruptRecordError,
    crc32c,
    index_records,
    masked_crc32c,
    write_records,
)


def test_crc32c_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert masked_crc32c(b"") == 0xA282EAD8


def test_framing_round_trip_and_index(tmp_path):
    records = [b"", b"a", b"hello" * 1000]
    path = tmp_path / "x.tfrecords"
    write_records(path, records)
    rows = index_records(path)
    assert rows[:, 1].tolist() == [0, 1, 5000]
    raw = path.read_bytes()
    for (offset, length), record in zip(rows, records, strict=True):
        assert raw[offset : offset + length] == record
        (stored,) = struct.unpack("<I", raw[offset + length : offset + length + 4])
        assert stored == masked_crc32c(record)


def test_corrupt_or_truncated_files_are_named(tmp_path):
    path = tmp_path / "bad.tfrecords"
    write_records(path, [b"abcdef", b"ghij"])
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "short.tfrecords"
    truncated.write_bytes(bytes(data[:-3]))
    with pytest.raises(CorruptRecordError, match=r"short\.tfrecords.*truncated"):
        index_records(truncated)
    data[2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match=r"bad\.tfrecords: bad length checksum"):
        index_records(path)
