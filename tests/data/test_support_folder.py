"""A user's class folders read as a support set: every image once, in sorted class order,
and a clear refusal for what would silently give a wrong recogniser."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from litemeta.data.images import ImageLoadError, read_image_file
from litemeta.data.support_folder import SkippedImage, folder_images, read_support_folder


def _png(path: Path, colour: tuple[int, int, int], size: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


@pytest.fixture
def support(tmp_path: Path) -> Path:
    folder = tmp_path / "support"
    _png(folder / "red" / "b.png", (200, 0, 0))
    _png(folder / "red" / "a.png", (250, 0, 0), size=30)
    _png(folder / "blue" / "nested" / "c.png", (0, 0, 200))
    (folder / "blue" / "._c.png").write_bytes(b"macOS metadata")  # hidden: not an image
    return folder


def test_the_support_set_is_every_image_under_each_class_folder(support: Path) -> None:
    read = read_support_folder(support, 16)
    assert read.classes == ["blue", "red"]
    assert read.labels.tolist() == [0, 1, 1]
    expected = [support / "blue/nested/c.png", support / "red/a.png", support / "red/b.png"]
    assert torch.equal(read.images, torch.stack([read_image_file(str(p), 16) for p in expected]))
    assert read.images.dtype == torch.uint8 and read.images.shape == (3, 3, 16, 16)
    assert read.skipped == []


def test_unreadable_images_raise_or_are_listed_when_skipped(support: Path) -> None:
    broken = support / "red" / "c.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match=r"c\.png"):
        read_support_folder(support, 16)
    read = read_support_folder(support, 16, skip_unreadable=True)
    assert read.labels.tolist() == [0, 1, 1]
    [skipped] = read.skipped
    assert isinstance(skipped, SkippedImage) and skipped.path == broken
    assert "c.png" in skipped.error


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda f: _png(f / "stray.png", (1, 2, 3)), r"1 lie in .* itself \(e\.g\. stray\.png\)"),
        (lambda f: (f / "green").mkdir(), r"\['green'\] .* have no images"),
        (lambda f: (f / "blue" / "nested" / "c.png").write_bytes(b"x"), "'blue' has no readable"),
    ],
)
def test_folders_that_would_give_a_wrong_recogniser_are_refused(support, arrange, message):
    arrange(support)
    with pytest.raises(ValueError, match=message):
        read_support_folder(support, 16, skip_unreadable=True)


def test_one_class_is_not_enough(tmp_path: Path) -> None:
    _png(tmp_path / "only" / "a.png", (5, 5, 5))
    with pytest.raises(ValueError, match=r"1 class folder\(s\) \['only'\]; .* at least two"):
        read_support_folder(tmp_path, 16)


def test_folder_images_names_what_it_leaves_out_and_refuses_a_file(support: Path) -> None:
    (support / "red" / "IMG_1.HEIC").write_bytes(b"heic")
    with pytest.warns(UserWarning, match=r"left out 1 file\(s\) of query folder .*IMG_1\.HEIC"):
        assert len(folder_images(support, "query")) == 3
    with pytest.raises(NotADirectoryError, match="query must be a folder of images"):
        folder_images(support / "red" / "a.png", "query")
    with pytest.raises(FileNotFoundError, match=r"support folder .* does not exist"):
        folder_images(support / "missing", "support")
