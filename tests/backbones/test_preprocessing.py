"""Preprocessing: uint8 or 0..1 images, resized and normalised, grayscale repeated to RGB."""

import pytest
import torch

from litemeta.backbones import create_backbone

SMALL = 32


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone("resnet18", image_size=SMALL, pretrained=False)


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
