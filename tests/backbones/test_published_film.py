"""FiLM where the publications put it, with the layer counts and widths of their
architectures derived here from the architecture descriptions, not from the code.

EfficientNet: LITE's ``efficientnet.py`` (``FilmEfficientNet.extract_features``) modulates
the stem's batch norm, the depthwise batch norm of every MBConv block and the head's batch
norm, each before the swish: 18 layers in B0. ResNet: CNAPs' ``resnet.py``, bn1 and bn2 of
every basic block."""

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


#: EfficientNet-B0 (Tan & Le, Table 1): the stem's 3x3 convolution has 32 channels, the
#: head's 1x1 convolution before pooling 1280.
EFFICIENTNET_B0_STEM, EFFICIENTNET_B0_HEAD = 32, 1280


def efficientnet_b0_depthwise_channels() -> list[int]:
    """The depthwise convolution of a block works on ``expansion x its input channels``;
    the first block of a stage takes the stage's input, the others its output."""
    channels = []
    for expansion, first_input, output, blocks in EFFICIENTNET_B0_STAGES:
        channels += [expansion * first_input] + [expansion * output] * (blocks - 1)
    return channels


def efficientnet_b0_film_channels() -> list[int]:
    """LITE's FiLM layers in model order: stem, the 16 depthwise norms, head."""
    return [EFFICIENTNET_B0_STEM, *efficientnet_b0_depthwise_channels(), EFFICIENTNET_B0_HEAD]


#: ResNet-18 (He et al., CVPR 2016): two basic blocks per stage, two 3x3 convolutions with
#: a batch norm each; CNAPs' resnet.py applies FiLM after both.
RESNET18_FILM_CHANNELS = [width for width in (64, 128, 256, 512) for _ in range(2 * 2)]


def test_the_architecture_tables_give_the_published_counts():
    channels = efficientnet_b0_depthwise_channels()
    assert len(channels) == 16  # 1 + 2 + 2 + 3 + 3 + 4 + 1 MBConv blocks
    assert channels == [32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672] + [1152] * 4
    assert sum(channels) == 8960
    film = efficientnet_b0_film_channels()
    assert len(film) == 18 and sum(film) == 32 + 8960 + 1280 == 10_272
    assert len(RESNET18_FILM_CHANNELS) == 16 and sum(RESNET18_FILM_CHANNELS) == 3840


@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "efficientnet_b0", "efficientnet_lite0"])
def test_efficientnet_film_follows_the_stem_each_depthwise_and_the_head_batch_norm(name):
    backbone = create_backbone(name, image_size=32, pretrained=False)
    assert backbone.film_placement == "published"
    layers = backbone.film_layers
    assert [layer.channels for layer in layers] == efficientnet_b0_film_channels()
    modules = dict(backbone.model.named_modules())
    # The stem's norm follows the stem convolution, the head's the 1x1 head convolution.
    assert layers[0].name == "bn1" and modules["conv_stem"].out_channels == layers[0].channels
    assert layers[-1].name == "bn2" and modules["conv_head"].out_channels == layers[-1].channels
    # The first block has no expansion (its depthwise norm is bn1), the others do (bn2).
    blocks = layers[1:-1]
    assert blocks[0].name == "blocks.0.0.bn1"
    assert all(layer.name.endswith(".bn2") for layer in blocks[1:])
    for layer in blocks:
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


def _shifted(backbone, layer: int) -> list:
    """Identity FiLM but a shift of -1000 at ``layer``: before ReLU6 it zeroes the layer's
    activations; after the activation they would be -1000."""
    film = backbone.identity_film()
    film[layer] = (film[layer][0], torch.full_like(film[layer][1], -1000.0))
    return film


def test_published_efficientnet_film_is_applied_before_the_activation():
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", image_size=32, pretrained=False)
    seen = {}
    model = backbone.model
    model.blocks.register_forward_pre_hook(lambda module, args: seen.update(stem=args[0]))
    model.blocks[0][0].aa.register_forward_hook(
        lambda module, args, output: seen.update(depthwise=output)
    )
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        backbone(images, _shifted(backbone, 0))  # the stem
        assert torch.equal(seen["stem"], torch.zeros_like(seen["stem"]))
        backbone(images, _shifted(backbone, 1))  # the first block's depthwise norm
        assert torch.equal(seen["depthwise"], torch.zeros_like(seen["depthwise"]))
        features = backbone(images, _shifted(backbone, 17))  # the head, before pooling
    assert torch.equal(features, torch.zeros_like(features))


def test_tf_efficientnet_b0_is_the_tensorflow_port_with_lites_input_range():
    """LITE's efficientnet.py (and ORBIT's timm tf_efficientnet_b0) pad like TensorFlow's
    "same" and use batch-norm epsilon 1e-3; LITE feeds images scaled to [-1, 1]."""
    tf_port = create_backbone("tf_efficientnet_b0", image_size=32, pretrained=False)
    native = create_backbone("efficientnet_b0", image_size=32, pretrained=False)
    norms = [m for m in tf_port.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(norm.eps == 1e-3 for norm in norms)
    assert all(m.eps == 1e-5 for m in native.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # TF "same": a stride-2 3x3 convolution of 32 px pads one pixel after, none before
    # (PyTorch's symmetric padding would pad one on each side).
    images = torch.rand(1, 3, 32, 32)
    conv = tf_port.model.conv_stem
    by_hand = torch.nn.functional.conv2d(
        torch.nn.functional.pad(images, (0, 1, 0, 1)), conv.weight, stride=2
    )
    with torch.no_grad():
        torch.testing.assert_close(conv(images), by_hand)
    assert native.model.conv_stem.padding == (1, 1)
    assert tf_port.mean.tolist() == tf_port.std.tolist() == [0.5, 0.5, 0.5]
    # ORBIT normalises its frames with ImageNet's statistics (utils/args.py: 'imagenet').
    orbit = create_backbone("timm:tf_efficientnet_b0", image_size=32, pretrained=False)
    torch.testing.assert_close(orbit.mean, torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(orbit.std, torch.tensor([0.229, 0.224, 0.225]))
    # Same shapes, so B0 weights of one map onto the other tensor by tensor.
    shapes = [tuple(t.shape) for t in native.model.state_dict().values()]
    assert [tuple(t.shape) for t in tf_port.model.state_dict().values()] == shapes
