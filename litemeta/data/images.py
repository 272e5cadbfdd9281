"""Decoding images into the uint8 ``[3, H, W]`` tensors that tasks hold, at their stored
size or resized to a square decode size."""

from __future__ import annotations

import io
import numbers
import os
import stat
from typing import Literal

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torch import Tensor

OnError = Literal["skip", "raise"]
"""What to do with an image that cannot be decoded: warn and use another, or stop."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

#: The most bytes one image file may hold before it is decoded: far above any photo
#: (a 100-megapixel JPEG is about 50 MB), far below what would exhaust memory.
MAX_IMAGE_BYTES = 256 * 2**20


class ImageLoadError(RuntimeError):
    """An image file is missing, unreadable or corrupt; the message names it. Readers skip
    such images with ``on_error='skip'`` (``data.on_error=skip`` on the command line)."""


class NoReplacementError(ImageLoadError):
    """Skipping unreadable images (``on_error='skip'``) found no readable image to use
    instead: the class has too few readable images left for the task."""


def check_on_error(on_error: str) -> OnError:
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    return on_error  # type: ignore[return-value]


def check_decode_size(size: int | None) -> int | None:
    """``size`` if it is a positive number of pixels or ``None`` (keep the stored size)."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
        raise ValueError(
            f"decode_size must be a positive number of pixels, or None for the stored size; "
            f"got {size!r}"
        )
    return int(size)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert to RGB, compositing any transparency onto ``background`` and scaling 16-bit
    and floating-point images to 8 bits (see :func:`_to_eight_bits`)."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_eight_bits(image)
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")  # a palette entry or colour marked transparent (tRNS)
    if image.mode in ("RGBA", "LA"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image).convert("RGB")
    return image.convert("RGB")


def _to_eight_bits(image: Image.Image) -> Image.Image:
    """A single-channel image of 16-bit or 32-bit integers (modes ``I;16*``, ``I``) or of
    floats (``F``) as 8-bit grayscale (``L``).

    Integers are read as 16-bit samples (0..65535, as in 16-bit PNG and TIFF); floats as
    0..1. PIL's own conversion clips instead, which turns most 16-bit images white. Values
    outside those ranges have no agreed meaning and are refused.
    """
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        full_scale, kind = 1.0, "floating-point samples outside 0..1"
    else:
        full_scale, kind = 65535.0, "integer samples outside 0..65535 (not 16-bit)"
    if values.size and (values.min() < 0 or values.max() > full_scale):
        raise ValueError(f"{image.mode} image with {kind}: convert it to 8 or 16 bits")
    eight_bits = np.rint(values * (255.0 / full_scale)).astype(np.uint8)
    return Image.fromarray(eight_bits)


def decode_image(data: bytes, image_size: int | None, source: str) -> Tensor:
    """Decode encoded image bytes to a uint8 tensor ``[3, S, S]`` (``[3, H, W]`` with
    ``image_size=None``).

    The image is turned upright as its EXIF orientation says (photos from phones are
    often stored sideways), then resized directly to ``image_size`` x ``image_size`` (no
    crop), as Meta-Dataset's decoder does; ``None`` keeps its stored size (the backbone
    resizes on its device). ``source`` names the image in error messages.
    """
    if image_size is not None and image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not data:
        raise ImageLoadError(f"image {source} is an empty file (0 bytes); replace or delete it")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = to_rgb(_upright(image))
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"image {source} is too large to decode safely ({error}); shrink or remove it"
        ) from None
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"cannot decode image {source}: not an image format PIL reads (or a corrupt "
            "header); replace or delete the file"
        ) from error
    except Exception as error:  # PIL raises many types for corrupt files
        raise ImageLoadError(
            f"cannot decode image {source}: {type(error).__name__}: {error}; replace or "
            "delete the file"
        ) from error
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    array = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says (itself when there is none)."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def read_image_bytes(path: str | os.PathLike[str], limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the image file at ``path``: a regular file (or a link to one) of at
    most ``limit`` bytes. A FIFO, a device (``/dev/zero``), a socket or a folder named like
    an image raises :class:`ImageLoadError` at once, without waiting on it or reading it
    without end; so does a larger file, before it is read."""
    try:
        # Non-blocking: opening a FIFO with no writer would wait forever.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ImageLoadError(f"cannot read image {path}: {error}") from error
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ImageLoadError(
            f"image {path} is not a regular file (a {_file_kind(status.st_mode)}): "
            "images must be ordinary files; replace it with one or remove it"
        )
    with os.fdopen(descriptor, "rb") as handle:
        check_image_bytes(status.st_size, str(path), limit)
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise ImageLoadError(f"cannot read image {path}: {error}") from error
    check_image_bytes(len(data), str(path), limit)  # it may have grown while being read
    return data


def check_image_bytes(size: int, source: str, limit: int = MAX_IMAGE_BYTES) -> None:
    """Raise :class:`ImageLoadError` naming ``source`` if an image of ``size`` bytes is
    larger than ``limit``."""
    if size > limit:
        raise ImageLoadError(
            f"image {source} holds more than {limit / 2**20:.0f} MB, the most an image may "
            "hold before it is decoded: shrink it or remove it"
        )


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "FIFO",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISSOCK: "socket",
        stat.S_ISDIR: "folder",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def read_image_file(path: str, image_size: int | None) -> Tensor:
    """Read an image file from disk (:func:`read_image_bytes`) into a uint8 tensor, resized
    to ``image_size`` square as :func:`decode_image` does (``None``: its stored size)."""
    return decode_image(read_image_bytes(path), image_size, path)
