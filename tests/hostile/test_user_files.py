"""Files a user's folders may hold that are not images though named like them: a FIFO, a
link to a device, a file too large to be one. Each is one error naming the file, at once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from litemeta.cli import main
from litemeta.data.images import ImageLoadError, read_image_bytes, read_image_file
from tests.hostile.conftest import one_line_error


def _personalise(run: Path, support: Path, query: Path, *extra: str) -> int:
    argv = ["personalise", "--checkpoint", str(run), "--support", str(support)]
    return main([*argv, "--query", str(query), *extra])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_named_like_an_image_fails_at_once(tiny_run, folders, deadline, capsys):
    support, query = folders
    fifo = query / "x.jpg"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=f"image {fifo} is not a regular file \\(a FIFO\\)"):
        read_image_file(str(fifo), 32)
    assert time.monotonic() - started < 5
    assert _personalise(tiny_run, support, query) == 1
    assert f"image {fifo} is not a regular file (a FIFO)" in one_line_error(capsys)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_link_to_an_endless_device_is_refused_not_read(
    device, tiny_run, folders, deadline, capsys
):
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    support, query = folders
    link = support / "a" / "endless.png"
    link.symlink_to(device)
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match="not a regular file"):
        read_image_file(str(link), 32)
    assert time.monotonic() - started < 5
    assert _personalise(tiny_run, support, query) == 1
    line = one_line_error(capsys)
    assert f"image {link} is not a regular file (a character device)" in line
    assert _personalise(tiny_run, support, query, "--skip-unreadable") == 0


def test_a_file_larger_than_the_cap_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(ImageLoadError, match=f"image {big} holds more than 0 MB, the most"):
        read_image_bytes(big, limit=1024)
    assert read_image_bytes(big, limit=2048) == b"\0" * 2048


def test_a_folder_named_like_an_image_is_named(tmp_path):
    folder = tmp_path / "photo.jpg"
    folder.mkdir()
    with pytest.raises(ImageLoadError, match=f"{folder}"):
        read_image_file(str(folder), 32)
