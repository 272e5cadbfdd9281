"""TFRecord framing without TensorFlow: CRC32C, writing, indexing, damaged files."""

import pickle
import random
import struct

import pytest

from litemeta.data.tfrecord import (
    CorruptRecordError,
    OpenFiles,
    crc32c,
    index_records,
    masked_crc32c,
    read_record,
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


def _naive_crc32c(data: bytes) -> int:
    """CRC-32C bit by bit: reflected Castagnoli polynomial 0x82F63B78."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_and_its_mask_equal_a_bitwise_reference():
    rng = random.Random(5)
    for length in (1, 7, 64, 1000):
        data = rng.randbytes(length)
        crc = _naive_crc32c(data)
        assert crc32c(data) == crc
        rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
        assert masked_crc32c(data) == (rotated + 0xA282EAD8) % 2**32


def test_records_are_read_back_at_their_offsets_with_or_without_checks(tmp_path):
    records = [b"first", b"", b"third record" * 50]
    path = tmp_path / "r.tfrecords"
    write_records(path, records)
    rows = index_records(path)
    with open(path, "rb") as handle:
        for (offset, length), record in zip(rows.tolist(), records, strict=True):
            assert read_record(handle, offset, length, True, "r") == record
    data = bytearray(path.read_bytes())
    offset, length = rows[2].tolist()
    data[offset + 3] ^= 0x40  # one bit of the third record's data
    path.write_bytes(bytes(data))
    with open(path, "rb") as handle:
        with pytest.raises(CorruptRecordError, match="r@x: the record fails its data checksum"):
            read_record(handle, offset, length, True, "r@x")
        damaged = read_record(handle, offset, length, False, "r@x")
        assert damaged != records[2] and len(damaged) == len(records[2])
        with pytest.raises(CorruptRecordError, match="the record is truncated"):
            read_record(handle, offset, length + 10, False, "r@x")


def test_open_files_keep_the_most_recently_used_handles(tmp_path):
    paths = []
    for name in "abc":
        paths.append(str(tmp_path / name))
        (tmp_path / name).write_bytes(name.encode())
    files = OpenFiles(max_open=2)
    a = files.get(paths[0])
    assert files.get(paths[0]) is a and a.read() == b"a"
    b = files.get(paths[1])
    files.get(paths[0])  # a is now the most recently used
    files.get(paths[2])  # so b is closed to make room
    assert len(files) == 2 and b.closed and not a.closed
    copy = pickle.loads(pickle.dumps(files))  # as a DataLoader worker receives it
    assert len(copy) == 0 and copy.max_open == 2
    files.close()
    assert a.closed and len(files) == 0
    with pytest.raises(ValueError, match="max_open must be at least 1, got 0"):
        OpenFiles(max_open=0)
