"""TFRecord files without TensorFlow: framing, CRC32C checks, indexing and random access.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)``, little-endian, where ``masked(c) = ((c >> 15) | (c << 17)) +
0xA282EAD8`` modulo 2**32.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Iterable
from functools import cache
from typing import Any, BinaryIO

import numpy as np

from litemeta.data.images import ImageLoadError

HEADER_BYTES = 12  # uint64 length, uint32 masked CRC of the length
FOOTER_BYTES = 4  # uint32 masked CRC of the data


@cache
def _crc32c_module() -> Any:
    try:
        import crc32c
    except ImportError as error:
        raise ImportError(
            "reading TFRecord files needs the crc32c package: pip install crc32c"
        ) from error
    return crc32c


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses, computed by the ``crc32c`` package (hardware
    instructions where the CPU has them)."""
    return _crc32c_module().crc32c(data)


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class CorruptRecordError(ImageLoadError, ValueError):
    """A TFRecord file or record that is truncated, fails its checksums or does not parse;
    the message names the file and the byte offset of the record."""


def write_records(path: str | os.PathLike[str], records: Iterable[bytes]) -> None:
    """Write ``records`` as a TFRecord file."""
    with open(path, "wb") as handle:
        for data in records:
            length = struct.pack("<Q", len(data))
            handle.write(length)
            handle.write(struct.pack("<I", masked_crc32c(length)))
            handle.write(data)
            handle.write(struct.pack("<I", masked_crc32c(data)))


def index_records(path: str | os.PathLike[str]) -> np.ndarray:
    """Scan a TFRecord file once: ``[n, 2]`` int64 rows of (data offset, data length).

    Only the 12-byte headers are read (their length checksum is verified); data is
    skipped with a seek, so indexing is fast even for large files.
    """
    rows = []
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        position = 0
        while position < size:
            header = handle.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES:
                raise CorruptRecordError(
                    f"{path}: truncated record header at byte {position}; the file is "
                    "incomplete, convert or copy it again"
                )
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise CorruptRecordError(
                    f"{path}: bad length checksum at byte {position}; the file is corrupt or "
                    "not a TFRecord file"
                )
            end = position + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                raise CorruptRecordError(
                    f"{path}: record at byte {position} claims {length} bytes but the file "
                    "ends first; the file is truncated"
                )
            rows.append((position + HEADER_BYTES, length))
            position = end
            handle.seek(position)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def read_record(handle: BinaryIO, offset: int, length: int, verify: bool, source: str) -> bytes:
    """Read the record data at ``offset`` (from ``index_records``), optionally checking CRC.

    ``length`` is bounded by the file's size (``index_records`` refuses longer claims), so
    a corrupt length never asks for more memory than the file holds.
    """
    handle.seek(offset)
    data = handle.read(length + FOOTER_BYTES)
    if len(data) != length + FOOTER_BYTES:
        raise CorruptRecordError(f"{source}: the record is truncated")
    payload = data[:length]
    if verify and masked_crc32c(payload) != struct.unpack("<I", data[length:])[0]:
        raise CorruptRecordError(f"{source}: the record fails its data checksum")
    return payload


class OpenFiles:
    """A bounded LRU of open binary file handles, reopened after a fork (per process)."""

    def __init__(self, max_open: int = 32) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.max_open = max_open
        self._handles: OrderedDict[str, BinaryIO] = OrderedDict()
        self._pid = os.getpid()

    def get(self, path: str) -> BinaryIO:
        if self._pid != os.getpid():  # a DataLoader worker: never share parent offsets
            self._handles = OrderedDict()
            self._pid = os.getpid()
        handle = self._handles.get(path)
        if handle is not None:
            self._handles.move_to_end(path)
            return handle
        handle = open(path, "rb")  # noqa: SIM115 - kept open in the LRU, closed on eviction
        self._handles[path] = handle
        while len(self._handles) > self.max_open:
            _, oldest = self._handles.popitem(last=False)
            oldest.close()
        return handle

    def __len__(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __getstate__(self) -> dict:
        return {"max_open": self.max_open, "_handles": OrderedDict(), "_pid": -1}
