"""FiLM where the publications put it, with the layer counts and widths of their
architectures derived here from the architecture descriptions, not from the code."""

import pytest
import torch

from litemeta.backbones import create_backbone

#: EfficientNet-B0 (Tan & Le, ICML 2019, Table 1): the MBConv stages as
#: (expansion ratio, input channels, output channels, blocks). Lite0 has the same widths.
EFFICIENTNET_B0_STAGES = [
    (1, 32, 16, 1),
    (6, 16, 24, 2),
    (6, 24, 40, 2),
    (6, 40, 80, 3),
    (6, 80, 112, 3),
    (6, 112, 192, 4),
    (6, 192, 320, 1),
]


def efficientnet_b0_depthwise_channels() -> list[int]:
    """The depthwise convolution of a block works on ``expansion x its input channels``;
    the first block of a stage takes the stage's input, the others its output."""
    channels = []
    for expansion, first_input, output, blocks in EFFICIENTNET_B0_STAGES:
        channels += [expansion * first_input] + [expansion * output] * (blocks - 1)
    return channels


#: ResNet-18 (He et al., CVPR 2016): two basic blocks per stage, two 3x3 convolutions with
#: a batch norm each; CNAPs' resnet.py applies FiLM after both.
RESNET18_FILM_CHANNELS = [width for width in (64, 128, 256, 512) for _ in range(2 * 2)]


def test_the_architecture_tables_give_the_published_counts():
    channels = efficientnet_b0_depthwise_channels()
    assert len(channels) == 16  # 1 + 2 + 2 + 3 + 3 + 4 + 1 MBConv blocks
    assert channels == [32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672] + [1152] * 4
    assert sum(channels) == 8960
    assert len(RESNET18_FILM_CHANNELS) == 16 and sum(RESNET18_FILM_CHANNELS) == 3840


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0"])
def test_efficientnet_film_follows_each_depthwise_batch_norm(name):
    backbone = create_backbone(name, image_size=32, pretrained=False)
    assert backbone.film_placement == "published"
    layers = backbone.film_layers
    assert [layer.channels for layer in layers] == efficientnet_b0_depthwise_channels()
    # The first block has no expansion (its depthwise norm is bn1), the others do (bn2).
    assert layers[0].name == "blocks.0.0.bn1"
    assert all(layer.name.endswith(".bn2") for layer in layers[1:])
    modules = dict(backbone.model.named_modules())
    for layer in layers:
        block = modules[layer.name.rsplit(".", 1)[0]]
        assert block.conv_dw.groups == block.conv_dw.out_channels == layer.channels


def test_resnet18_film_follows_bn1_and_bn2_of_every_basic_block():
    backbone = create_backbone("resnet18", image_size=32, pretrained=False)
    assert backbone.film_placement == "published"
    expected_names = [
        f"layer{stage}.{block}.bn{norm}"
        for stage in (1, 2, 3, 4)
        for block in (0, 1)
        for norm in (1, 2)
    ]
    assert [layer.name for layer in backbone.film_layers] == expected_names
    assert [layer.channels for layer in backbone.film_layers] == RESNET18_FILM_CHANNELS


def test_published_efficientnet_film_is_applied_before_the_activation():
    """A FiLM shift of -1000 on a depthwise norm's output, before ReLU6, zeroes that
    block's depthwise activations; after the activation it would not."""
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", image_size=32, pretrained=False)
    block = backbone.model.blocks[1][0]
    seen = []
    block.aa.register_forward_hook(lambda module, args, output: seen.append(output))
    film = backbone.identity_film()
    film[1] = (film[1][0], torch.full_like(film[1][1], -1000.0))
    with torch.no_grad():
        backbone(torch.rand(1, 3, 32, 32), film)
    assert torch.equal(seen[0], torch.zeros_like(seen[0]))
