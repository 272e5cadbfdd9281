"""Fuzzing the Meta-Dataset record reader: every damaged file gives back the original data or
raises ``CorruptRecordError`` naming the file and offset - never another exception, never
wrong data while CRCs are checked, never an allocation larger than the file."""

from __future__ import annotations

import contextlib
import io
import json
import random
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from litemeta.data.example_proto import parse_example
from litemeta.data.images import ImageLoadError, decode_image
from litemeta.data.metadataset import MetaDatasetRecords
from litemeta.data.tfrecord import CorruptRecordError, index_records, masked_crc32c, write_records
from litemeta.experiment import load_experiment
from tests.data.tf_example import make_example

CASES = 6000
RECORDS = 3


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 5), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    crc = struct.pack("<I", masked_crc32c(length))
    return length + crc + data + struct.pack("<I", masked_crc32c(data))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    spec = {
        "name": "fuzz",
        "classes_per_split": {"TRAIN": 1, "VALID": 0, "TEST": 0},
        "images_per_class": {"0": RECORDS},
        "class_names": {"0": "only"},
        "file_pattern": "{}.tfrecords",
    }
    (tmp_path / "dataset_spec.json").write_text(json.dumps(spec))
    return tmp_path


def _originals() -> list[bytes]:
    return [make_example(image=_png((60 * i, 90, 200)), label=0) for i in range(RECORDS)]


def _mutate(data: bytes, rng: random.Random) -> tuple[str, bytes, bool]:
    """A damaged copy, its kind, and whether CRCs must catch it (reframed payloads pass
    their CRCs and only test the parser)."""
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "overwrite", "append", "huge-length", "reframed"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        del data[rng.randrange(len(data)) :]
    elif kind == "overwrite":
        start = rng.randrange(len(data))
        data[start : start + rng.randint(1, 16)] = rng.randbytes(rng.randint(1, 16))
    elif kind == "append":
        data += rng.randbytes(rng.randint(1, 32))
    elif kind == "huge-length":  # a length with a valid CRC that claims far more than the file
        length = struct.pack("<Q", rng.choice([2**32, 2**40, 2**63 - 1, len(data) + 1]))
        data[:12] = length + struct.pack("<I", masked_crc32c(length))
    else:  # a damaged payload, framed again with correct CRCs
        records = _originals()
        payload = bytearray(records[0])
        start = rng.randrange(len(payload))
        payload[start : start + rng.randint(1, 8)] = rng.randbytes(rng.randint(0, 8))
        return kind, b"".join(_frame(r) for r in [bytes(payload), *records[1:]]), False
    return kind, bytes(data), True


def _check_case(root: Path, original: list[dict], kind: str, must_detect: bool) -> None:
    """Read every record with and without CRC checks; the reader's own allocations (traced
    while it runs, not while an image it returned is decoded) stay within the file's size."""
    path = root / "0.tfrecords"
    size = path.stat().st_size
    for verify in (True, False):
        collection = MetaDatasetRecords(root, "train", verify_crc=verify)
        for item in range(RECORDS):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            try:
                example = collection.read_example(0, item)
            except CorruptRecordError as error:
                assert str(path) in str(error), error
                continue
            finally:
                peak = tracemalloc.get_traced_memory()[1] - before
                assert peak < 16 * size + 2**16, f"{kind}: the reader allocated {peak} bytes"
            rows = index_records(path)
            assert int((rows[:, 0] + rows[:, 1]).max()) <= size
            if example == original[item]:
                continue
            assert not (verify and must_detect), f"{kind}: wrong data with CRC checks on"
            with contextlib.suppress(ImageLoadError):  # any image, or the reader's error
                decode_image(example["image"][0], 4, collection.item_source(0, item))


def test_damaged_records_raise_the_reader_error_or_read_back_intact(source: Path) -> None:
    good = b"".join(_frame(r) for r in _originals())
    original = [parse_example(r) for r in _originals()]
    rng = random.Random(20240601)
    started = time.perf_counter()
    tracemalloc.start()
    (source / "0.tfrecords").write_bytes(good)
    _check_case(source, original, "intact", True)
    try:
        for _ in range(CASES):
            kind, damaged, must_detect = _mutate(good, rng)
            (source / "0.tfrecords").write_bytes(damaged)
            _check_case(source, original, kind, must_detect)
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # features: a 4 GB length in a 6-byte record
        b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a 10-byte varint length
        b"\x0a\x07\x0a\x05\x0a\x03\xff\xfe\x00",  # a feature name that is not UTF-8
        b"\x0a\x04\x0a\x02\x0a\x00",  # a feature with no name and no value
    ],
)
def test_malformed_examples_are_one_error_naming_file_and_offset(source: Path, payload) -> None:
    records = _originals()
    write_records(source / "0.tfrecords", [*records[:2], payload])
    collection = MetaDatasetRecords(source, "train")
    offset = sum(12 + len(r) + 4 for r in records[:2])
    with pytest.raises(CorruptRecordError, match=rf"0\.tfrecords@{offset}"):
        collection.read_item(0, 2)


def test_skip_uses_another_record_of_the_class(source: Path) -> None:
    records = _originals()
    write_records(source / "0.tfrecords", [*records[:2], b"\x0a\xff\xff\xff\xff\x0f"])
    collection = MetaDatasetRecords(source, "train", on_error="skip", decode_size=8)
    with pytest.warns(UserWarning, match=r"skipping unreadable image.*0\.tfrecords@"):
        image = collection.load_image(0, 2)
    assert image.shape == (3, 8, 8)


def test_crc_checks_are_on_by_default_and_can_be_switched_off(source: Path) -> None:
    config = load_experiment("meta-dataset", ["data.meta_dataset.verify_crc=false"])
    assert config.data.meta_dataset.verify_crc is False
    assert load_experiment("meta-dataset").data.meta_dataset.verify_crc is True
    moved = r"data\.verify_crc is now data\.meta_dataset\.verify_crc; read as that"
    with pytest.warns(UserWarning, match=moved):
        renamed = load_experiment("meta-dataset", ["data.verify_crc=false"])
    assert renamed.data.meta_dataset.verify_crc is False
    records = _originals()
    data = bytearray(b"".join(_frame(r) for r in records))
    data[12 + records[0].index(b"IDAT") + 6] ^= 0x01  # inside the first record's image
    (source / "0.tfrecords").write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match=r"0\.tfrecords@0: .*checksum"):
        MetaDatasetRecords(source, "train").read_example(0, 0)
    unchecked = MetaDatasetRecords(source, "train", verify_crc=False).read_example(0, 0)
    assert unchecked["image"] != parse_example(records[0])["image"]  # wrong, and unnoticed
