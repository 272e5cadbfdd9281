"""Preprocessing: uint8 or 0..1 images, resized and normalised, grayscale repeated to RGB."""

import numpy as np
import pytest
import torch
from PIL import Image

from litemeta.backbones.preprocessing import normalise_images

from .helpers import SMALL


def test_uint8_and_unit_float_images_give_the_same_features(backbone):
    images = torch.randint(0, 256, (2, 3, SMALL, SMALL), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), backbone(images.float() / 255))


def test_images_are_resized_to_the_backbone_size(backbone):
    large = torch.randint(0, 256, (2, 3, 70, 50), dtype=torch.uint8)
    assert backbone.preprocess(large).shape == (2, 3, SMALL, SMALL)
    assert backbone(large).shape == (2, backbone.feature_dim)


def test_grayscale_is_repeated_to_rgb_and_other_channel_counts_are_refused(backbone):
    gray = torch.rand(1, 1, SMALL, SMALL)
    torch.testing.assert_close(
        backbone.preprocess(gray), backbone.preprocess(gray.expand(1, 3, -1, -1))
    )
    with pytest.raises(ValueError, match="1 or 3 channels"):
        backbone(torch.rand(1, 4, SMALL, SMALL))


def _pil_resize(image: np.ndarray, size: int) -> np.ndarray:
    """``[h, w, c]`` floats resized channel by channel by Pillow's bilinear filter, which
    widens its support when it shrinks (antialiasing): ``[c, size, size]``."""
    channels = [Image.fromarray(image[..., c], mode="F") for c in range(image.shape[-1])]
    resized = [c.resize((size, size), Image.Resampling.BILINEAR) for c in channels]
    return np.stack([np.asarray(c) for c in resized])


@pytest.mark.parametrize(("height", "width", "size"), [(40, 30, 16), (12, 12, 20), (33, 47, 21)])
def test_resizing_matches_pillows_antialiased_bilinear_filter(height, width, size):
    image = np.random.default_rng(size).random((height, width, 3), dtype=np.float32)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None]
    resized = normalise_images(batch, size, torch.zeros(3), torch.ones(3))
    np.testing.assert_allclose(resized[0].numpy(), _pil_resize(image, size), atol=1e-5)


def test_uint8_is_scaled_to_unit_range_then_normalised_per_channel():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 5), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float32)  # noqa: E731
    out = normalise_images(torch.from_numpy(pixels), 5, as_tensor(mean), as_tensor(std))
    assert out.dtype == torch.float32
    expected = (pixels / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_each_image_is_preprocessed_on_its_own():
    images = torch.rand(4, 3, 23, 17)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    batch = normalise_images(images, 9, mean, std)
    for row in range(4):
        torch.testing.assert_close(
            batch[row], normalise_images(images[row : row + 1], 9, mean, std)[0]
        )


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 8, 8), r"\[n, channels, height, width\] tensor, got shape \(3, 8, 8\)"),
        (torch.rand(1, 2, 8, 8), "1 or 3 channels, got 2"),
        (
            torch.ones(1, 3, 8, 8, dtype=torch.int32),
            "uint8 .* or floating point .*, got torch.int32",
        ),
    ],
)
def test_images_of_the_wrong_shape_or_type_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        normalise_images(images, 8, torch.zeros(3), torch.ones(3))
