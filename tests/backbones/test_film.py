"""FiLM on timm backbones: identity parameters change nothing, others change the features."""

from copy import deepcopy

import pytest
import torch
from torch import nn

from litemeta.backbones import create_backbone
from litemeta.backbones.film import FilmHooks

from .helpers import SMALL


@pytest.fixture(scope="module", params=["efficientnet_lite0", "efficientnet_b0", "resnet18"])
def backbone(request):
    torch.manual_seed(0)
    backbone = create_backbone(request.param, image_size=SMALL, pretrained=False)
    # timm starts each residual branch's last norm at scale zero, which would hide FiLM on
    # ResNet blocks; trained networks have non-zero scales.
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
    return backbone


@pytest.fixture
def images():
    return torch.randint(0, 256, (3, 3, SMALL, SMALL), dtype=torch.uint8)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_b0", "resnet18"])
def test_placement_all_modulates_every_batch_norm_layer(name):
    backbone = create_backbone(name, image_size=SMALL, pretrained=False, film_placement="all")
    norms = [m for m in backbone.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(backbone.film_layers) == len(norms) > 0
    assert [layer.channels for layer in backbone.film_layers] == [m.num_features for m in norms]
    assert backbone.config()["film_placement"] == "all"


def test_identity_film_leaves_features_unchanged(backbone, images):
    with torch.no_grad():
        plain = backbone(images)
        filmed = backbone(images, backbone.identity_film())
    assert plain.shape == (3, backbone.feature_dim)
    assert torch.equal(plain, filmed)


@pytest.mark.parametrize("which", ["gamma", "beta"])
def test_other_film_parameters_change_features(backbone, images, which):
    identity = backbone.identity_film()
    if which == "gamma":
        film = [(gamma * 1.5, beta) for gamma, beta in identity]
    else:
        film = [(gamma, beta + 0.5) for gamma, beta in identity]
    with torch.no_grad():
        assert not torch.allclose(backbone(images), backbone(images, film))


def test_gradients_reach_every_film_parameter(backbone, images):
    film = [(g.requires_grad_(), b.requires_grad_()) for g, b in backbone.identity_film()]
    backbone(images, film).square().sum().backward()
    for gamma, beta in film:
        assert gamma.grad.abs().sum() > 0 and beta.grad.abs().sum() > 0


def test_film_parameters_of_the_wrong_shape_are_refused(backbone, images):
    film = backbone.identity_film()
    with pytest.raises(ValueError, match=r"one \(gamma, beta\) pair per FiLM layer"):
        backbone(images, film[:-1])
    film[0] = (torch.ones(film[0][0].numel() + 1), film[0][1])
    with pytest.raises(ValueError, match="must have shape"):
        backbone(images, film)


def test_channel_first_layer_norms_get_film():
    torch.manual_seed(0)
    backbone = create_backbone("timm:convnext_atto", image_size=SMALL, pretrained=False)
    assert backbone.film_placement == "all"  # nothing published for ConvNeXt
    assert backbone.film_layers and {layer.channel_dim for layer in backbone.film_layers} == {1}
    images = torch.rand(2, 3, SMALL, SMALL)
    film = backbone.identity_film()
    with torch.no_grad():
        assert torch.equal(backbone(images), backbone(images, film))
        shifted = [(gamma, beta + 0.1) for gamma, beta in film]
        assert not torch.allclose(backbone(images), backbone(images, shifted))


def test_channel_last_layer_norms_of_transformers_get_film():
    tokens = torch.randn(2, 5, 8)  # [batch, tokens, channels]
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    hooks = FilmHooks(model)
    assert [(layer.channels, layer.channel_dim) for layer in hooks.layers] == [(8, -1)]
    gamma, beta = torch.linspace(0.5, 2.0, 8), torch.linspace(-1.0, 1.0, 8)
    with hooks.applied([(gamma, beta)]):
        filmed = model(tokens)
    expected = model[2](model[1](model[0](tokens)) * gamma + beta)
    torch.testing.assert_close(filmed, expected)


def test_a_deep_copy_takes_film_parameters_of_its_own(backbone, images):
    copy = deepcopy(backbone)
    shifted = [(gamma, beta + 0.5) for gamma, beta in backbone.identity_film()]
    with torch.no_grad():
        torch.testing.assert_close(copy(images, shifted), backbone(images, shifted))
        torch.testing.assert_close(copy(images), backbone(images))


def test_published_placement_is_refused_where_none_is_defined():
    with pytest.raises(
        ValueError, match=r"no published FiLM placement .* use film placement 'all'"
    ):
        create_backbone(
            "timm:convnext_atto", image_size=SMALL, pretrained=False, film_placement="published"
        )
    with pytest.raises(ValueError, match="film placement must be one of"):
        create_backbone("resnet18", image_size=SMALL, pretrained=False, film_placement="some")
