"""Decoding images to uint8 ``[3, H, W]`` tensors: stored pixels, resizing without a crop,
transparency on white, EXIF orientation, 16-bit and float samples, and errors that name
the image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

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


@pytest.mark.parametrize(
    ("mode", "key", "other"), [("RGB", (10, 20, 30), (200, 0, 0)), ("L", 77, 150)]
)
def test_a_colour_marked_transparent_becomes_white(mode, key, other):
    """PNG's tRNS chunk marks one colour of an RGB or grey image transparent."""
    image = Image.new(mode, (2, 1), key)
    image.putpixel((1, 0), other)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=key)
    decoded = decode_image(buffer.getvalue(), None, "keyed.png")
    assert decoded[:, 0, 0].tolist() == [255, 255, 255]
    expected = list(other) if mode == "RGB" else [other] * 3
    assert decoded[:, 0, 1].tolist() == expected


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


def test_empty_and_unknown_files_say_what_they_are_without_internals():
    with pytest.raises(ImageLoadError, match=r"empty\.png is an empty file \(0 bytes\)"):
        decode_image(b"", None, "empty.png")
    with pytest.raises(ImageLoadError, match="not an image format PIL reads") as raised:
        decode_image(b"plain text, not a picture", None, "notes.png")
    assert "BytesIO" not in str(raised.value)


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


@pytest.mark.parametrize(("orientation", "dark_side"), [(6, "top"), (8, "bottom"), (3, "right")])
def test_exif_orientation_turns_a_photo_upright(orientation: int, dark_side: str):
    """A 60x40 JPEG stored with its left half black: EXIF 6 (turn 90 degrees clockwise
    to view) shows the black half on top, 8 at the bottom, 3 (180 degrees) on the right."""
    stored = np.full((40, 60, 3), 255, dtype=np.uint8)
    stored[:, :30] = 0
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif)
    image = decode_image(buffer.getvalue(), None, "photo.jpg").float()
    expected_shape = (3, 40, 60) if orientation == 3 else (3, 60, 40)
    assert tuple(image.shape) == expected_shape
    halves = {
        "top": (image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2 :]),
        "bottom": (image[:, image.shape[1] // 2 :], image[:, : image.shape[1] // 2]),
        "right": (image[:, :, image.shape[2] // 2 :], image[:, :, : image.shape[2] // 2]),
    }
    dark, light = halves[dark_side]
    assert dark.mean() < 20 and light.mean() > 235


@pytest.mark.parametrize(
    ("mode", "samples", "expected"),
    [
        ("I;16", np.array([[0, 8000, 32768, 65535]], dtype=np.uint16), [0, 31, 128, 255]),
        ("I", np.array([[0, 8000, 32768, 65535]], dtype=np.int32), [0, 31, 128, 255]),
        ("F", np.array([[0.0, 0.125, 0.5, 1.0]], dtype=np.float32), [0, 32, 128, 255]),
    ],
)
def test_sixteen_bit_and_float_images_are_scaled_not_clipped(mode, samples, expected):
    """PIL's own conversion clips 16-bit samples at 255 (a 12% grey becomes white)."""
    image = Image.fromarray(samples)
    assert image.mode == mode
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    decoded = decode_image(buffer.getvalue(), None, "deep.tif")
    for channel in decoded:  # grey: the same in R, G and B
        assert channel[0].tolist() == expected


def test_sixteen_bit_png_keeps_its_grey_level():
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 8000, dtype=np.uint16)).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), None, "dark16.png")
    assert decoded.unique().tolist() == [31]  # 8000 / 65535 * 255


def test_integer_samples_beyond_sixteen_bits_are_refused():
    buffer = io.BytesIO()
    Image.fromarray(np.array([[0, 1_000_000]], dtype=np.int32)).save(buffer, format="TIFF")
    with pytest.raises(ImageLoadError, match=r"outside 0\.\.65535.*convert it to 8 or 16 bits"):
        decode_image(buffer.getvalue(), None, "wide.tif")
