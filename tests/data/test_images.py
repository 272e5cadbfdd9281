"""Decoding images to uint8 ``[3, H, W]`` tensors: stored pixels, resizing without a crop,
transparency on white, and errors that name the image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litemeta.data.images import (
    ImageLoadError,
    check_decode_size,
    check_on_error,
    decode_image,
    read_image_file,
    to_rgb,
)


def _encode(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_stored_size_keeps_every_pixel_of_a_lossless_image():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # 5 high
    decoded = decode_image(_encode(Image.fromarray(pixels)), None, "random.png")
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 5, 7)
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), pixels)


def test_resizing_squashes_the_whole_image_without_a_crop():
    """A wide image, red above and blue below, keeps both halves when squashed square."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:10] = (255, 0, 0)
    pixels[10:] = (0, 0, 255)
    decoded = decode_image(_encode(Image.fromarray(pixels)), 8, "halves.png")
    assert decoded.shape == (3, 8, 8)
    assert (decoded[:, :3] == torch.tensor([255, 0, 0]).view(3, 1, 1)).all()
    assert (decoded[:, 5:] == torch.tensor([0, 0, 255]).view(3, 1, 1)).all()


def test_a_solid_colour_stays_that_colour_at_any_size():
    data = _encode(Image.new("RGB", (13, 9), (12, 200, 99)), "PNG")
    for size in (1, 4, 30):
        assert (
            decode_image(data, size, "solid.png") == torch.tensor([12, 200, 99])[:, None, None]
        ).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_onto_white(mode):
    """Alpha compositing by hand: c * a + 255 * (1 - a), for a half-transparent pixel."""
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (100, 40, 200, 128))
    if mode == "LA":
        image = rgba.convert("LA")
        colour = image.getpixel((1, 0))[0]
        expected = [colour * 128 / 255 + 255 * (1 - 128 / 255)] * 3
    elif mode == "P":
        image = Image.new("P", (2, 1), 0)
        image.putpalette([0, 0, 0, 100, 40, 200] + [0] * 762)
        image.putpixel((1, 0), 1)
        image.info["transparency"] = 0  # palette index 0 is fully transparent
        expected = [100, 40, 200]
    else:
        image = rgba
        expected = [c * 128 / 255 + 255 * (1 - 128 / 255) for c in (100, 40, 200)]
    rgb = np.asarray(to_rgb(image), dtype=float)
    assert rgb[0, 0].tolist() == [255, 255, 255]
    np.testing.assert_allclose(rgb[0, 1], expected, atol=1)


def test_unreadable_bytes_and_files_name_the_image(tmp_path: Path):
    with pytest.raises(ImageLoadError, match=r"cannot decode image holiday\.png: .*replace"):
        decode_image(b"\x89PNG but not really", 8, "holiday.png")
    truncated = _encode(Image.new("RGB", (30, 30), (1, 2, 3)), "JPEG")[:100]
    with pytest.raises(ImageLoadError, match=r"cut\.jpg"):
        decode_image(truncated, None, "cut.jpg")
    with pytest.raises(ImageLoadError, match=r"cannot read image .*missing\.png"):
        read_image_file(str(tmp_path / "missing.png"), 8)
    with pytest.raises(ValueError, match="image_size must be positive, got 0"):
        decode_image(b"", 0, "any")


def test_a_decompression_bomb_is_refused_before_decoding():
    bomb = _encode(Image.new("1", (14_000, 14_000)))
    with pytest.raises(ImageLoadError, match=r"bomb\.png is too large to decode safely"):
        decode_image(bomb, 8, "bomb.png")


def test_read_image_file_decodes_what_is_on_disk(tmp_path: Path):
    pixels = np.random.default_rng(1).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    assert np.array_equal(
        read_image_file(str(tmp_path / "x.png"), None).permute(1, 2, 0).numpy(), pixels
    )
    assert read_image_file(str(tmp_path / "x.png"), 3).shape == (3, 3, 3)


def test_decode_size_and_error_policy_are_checked():
    assert check_decode_size(None) is None
    assert check_decode_size(np.int64(32)) == 32 and type(check_decode_size(np.int64(32))) is int
    for bad in (0, -4, 2.5, True, "32"):
        with pytest.raises(ValueError, match="decode_size must be a positive number of pixels"):
            check_decode_size(bad)
    assert check_on_error("skip") == "skip" and check_on_error("raise") == "raise"
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise', got 'ignore'"):
        check_on_error("ignore")
