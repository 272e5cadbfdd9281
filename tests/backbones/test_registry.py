"""Building backbones by name: the supported ones, any timm CNN, local weight files."""

import pytest
import torch
from torch import nn

from litemeta.backbones import SUPPORTED_BACKBONES, create_backbone

from .helpers import SMALL


def test_unknown_backbone_lists_the_supported_names_and_the_timm_escape():
    with pytest.raises(ValueError, match="unknown backbone 'efficientnet_b9'") as error:
        create_backbone("efficientnet_b9", pretrained=False)
    message = str(error.value)
    assert all(name in message for name in SUPPORTED_BACKBONES)
    assert "timm:<timm model name>" in message


def test_any_timm_cnn_by_prefixed_name():
    backbone = create_backbone("timm:mobilenetv3_small_050", image_size=SMALL, pretrained=False)
    norms = [n for n, m in backbone.model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert backbone.film_placement == "all" and len(norms) > 10  # nothing published for it
    assert [layer.name for layer in backbone.film_layers] == norms
    assert backbone.config() == {
        "name": "timm:mobilenetv3_small_050",
        "image_size": SMALL,
        "film_placement": "all",
    }
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


def test_pretrained_and_random_backbones_differ():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    pretrained = create_backbone(image_size=32)
    random = create_backbone(image_size=32, pretrained=False)
    with torch.no_grad():
        assert not torch.allclose(pretrained(images), random(images))
