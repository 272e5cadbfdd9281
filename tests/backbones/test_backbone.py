"""Backbone preprocessing, frozen statistics, and building backbones by name."""

import pytest
import torch

from litemeta.backbones import SUPPORTED_BACKBONES, create_backbone
from litemeta.lite import lite_map

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


def test_normalisation_statistics_stay_frozen_in_train_mode(backbone):
    images = torch.rand(4, 3, SMALL, SMALL)
    backbone.eval()
    with torch.no_grad():
        eval_features = backbone(images)
    backbone.train()
    assert backbone.training and not backbone.model.training
    running_means = [
        m.running_mean.clone() for m in backbone.model.modules() if hasattr(m, "running_mean")
    ]
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), eval_features)
        torch.testing.assert_close(backbone(images[:1]), eval_features[:1])
    after = [m.running_mean for m in backbone.model.modules() if hasattr(m, "running_mean")]
    assert all(torch.equal(a, b) for a, b in zip(running_means, after, strict=True))
    # and LITE accepts it: no batch statistics couple the rows
    lite_map(backbone, images, h=2).sum().backward()


def test_unknown_backbone_lists_the_supported_names_and_the_timm_escape():
    with pytest.raises(ValueError, match="unknown backbone 'efficientnet_b9'") as error:
        create_backbone("efficientnet_b9", pretrained=False)
    message = str(error.value)
    assert all(name in message for name in SUPPORTED_BACKBONES)
    assert "timm:<timm model name>" in message


def test_any_timm_cnn_by_prefixed_name():
    backbone = create_backbone("timm:mobilenetv3_small_050", image_size=SMALL, pretrained=False)
    assert len(backbone.film_layers) > 0
    assert backbone(torch.rand(2, 3, SMALL, SMALL)).shape == (2, backbone.feature_dim)


def test_pretrained_without_offline_weights_says_what_to_do():
    with pytest.raises(ValueError, match=r"pretrained=False.*weights_file=PATH.*allow_download"):
        create_backbone("resnet18")


def test_a_local_weights_file_is_loaded(tmp_path, backbone):
    path = tmp_path / "resnet18.pth"
    torch.save(backbone.model.state_dict(), path)
    loaded = create_backbone("resnet18", image_size=SMALL, weights_file=path)
    images = torch.rand(2, 3, SMALL, SMALL)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), backbone(images))
    torch.save({"fc.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not fit this backbone"):
        create_backbone("resnet18", image_size=SMALL, weights_file=path)
