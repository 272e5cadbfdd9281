"""Parameter counts of each learner's meta-trained parts and of FiLM per task, for the
published backbones, against counts derived here from the publications' architecture
descriptions (LITE's features.py, set_encoder.py and efficientnet.py; CNAPs'
adaptation_networks.py and resnet.py), never read back from litemeta's modules."""

import pytest
import torch

from litemeta.learners import build_learner

#: The FiLM'd batch norms of EfficientNet-B0 as LITE's FilmEfficientNet modulates them: the
#: stem's (32 channels), the depthwise norm of each of the 16 MBConv blocks (Tan & Le,
#: 2019, Table 1; derived in tests/backbones/test_published_film.py) and the head's (1280);
#: and the widths of the 16 FiLM'd batch norms of ResNet-18's basic blocks (two per block,
#: two blocks per stage).
B0_DEPTHWISE = [32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672] + [1152] * 4
FILM_CHANNELS = {
    "efficientnet_b0": [32, *B0_DEPTHWISE, 1280],
    "resnet18": [64] * 4 + [128] * 4 + [256] * 4 + [512] * 4,
}
#: Pooled feature size d: EfficientNet-B0's 1280-channel head, ResNet-18's 512.
FEATURE_DIM = {"efficientnet_b0": 1280, "resnet18": 512}
#: Backbone weights without the 1000-class ImageNet layer: the published totals (5,288,548
#: and 11,689,512 parameters) minus 1000 x d weights and 1000 biases.
BACKBONE_PARAMETERS = {
    "efficientnet_b0": 5_288_548 - (1000 * 1280 + 1000),
    "resnet18": 11_689_512 - (1000 * 512 + 1000),
}
#: litemeta's backbones of each published architecture: timm's TensorFlow port of B0 (the
#: reference code's) and timm's PyTorch-native B0 have the same layers.
BACKBONES = {
    "tf_efficientnet_b0": "efficientnet_b0",
    "efficientnet_b0": "efficientnet_b0",
    "resnet18": "resnet18",
}
TASK_EMBEDDING = 64


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def set_encoder_parameters() -> int:
    """Five blocks of 3x3 convolution (64 maps, with bias) and a 64-channel normalisation
    with scale and shift (GroupNorm here, BatchNorm as published: the same count)."""
    first = 3 * 64 * 3 * 3 + 64 + 2 * 64
    other = 64 * 64 * 3 * 3 + 64 + 2 * 64
    return first + 4 * other


def film_generator_parameters(channels: list[int]) -> int:
    """Per FiLM layer of c channels, for gamma and for beta (LITE's DenseBlock and
    FilmLayerGenerator): Linear(64, 64), LayerNorm(64), Linear(64, c) and a regulariser
    vector of c numbers."""
    e = TASK_EMBEDDING
    return sum(2 * (linear(e, e) + 2 * e + linear(e, c) + c) for c in channels)


def classifier_adaptation_parameters(d: int) -> int:
    """Weight network: Linear(d, d) x 3; bias network: Linear(d, 1), then Linear(1, 1) x 2."""
    return 3 * linear(d, d) + linear(d, 1) + 2 * linear(1, 1)


EXPECTED = {
    "efficientnet_b0": {
        "film_layers": 18,
        "set_encoder": 150_144,
        "film_generator": 1_510_272,
        "classifier_adaptation": 4_920_325,
        "film_per_task": 20_544,
    },
    "resnet18": {
        "film_layers": 16,
        "set_encoder": 150_144,
        "film_generator": 644_096,
        "classifier_adaptation": 788_485,
        "film_per_task": 7_680,
    },
}


@pytest.mark.parametrize("backbone", sorted(EXPECTED))
def test_the_formulas_give_the_stated_counts(backbone):
    expected = EXPECTED[backbone]
    channels = FILM_CHANNELS[backbone]
    assert len(channels) == expected["film_layers"]
    assert set_encoder_parameters() == expected["set_encoder"]
    assert film_generator_parameters(channels) == expected["film_generator"]
    d = FEATURE_DIM[backbone]
    assert classifier_adaptation_parameters(d) == expected["classifier_adaptation"]
    assert 2 * sum(channels) == expected["film_per_task"]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone_name(request):
    return request.param


@pytest.mark.parametrize("learner_name", ["cnaps", "simple_cnaps"])
def test_cnaps_family_parameter_counts_match_the_publications(backbone_name, learner_name):
    torch.manual_seed(0)
    learner = build_learner(learner_name, backbone_name, image_size=32, pretrained=False)
    architecture = BACKBONES[backbone_name]
    expected = EXPECTED[architecture]
    assert len(learner.backbone.film_layers) == expected["film_layers"]
    assert count(learner.set_encoder) == expected["set_encoder"]
    assert count(learner.film_generator) == expected["film_generator"]
    meta_trained = expected["set_encoder"] + expected["film_generator"]
    if learner_name == "cnaps":
        assert count(learner.classifier_adaptation) == expected["classifier_adaptation"]
        meta_trained += expected["classifier_adaptation"]
    assert trainable(learner) == meta_trained  # the backbone is frozen
    assert count(learner.backbone) == BACKBONE_PARAMETERS[architecture]

    support = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        classifier = learner.adapt(support, torch.tensor([0, 1]))
    assert classifier.task_parameters()["film"].numel() == expected["film_per_task"]


@pytest.mark.parametrize("meta_train", ["film", "backbone"])
def test_protonets_meta_trains_the_published_film_layers_or_the_backbone(backbone_name, meta_train):
    learner = build_learner(
        "protonets", backbone_name, image_size=32, pretrained=False, meta_train=meta_train
    )
    architecture = BACKBONES[backbone_name]
    if meta_train == "film":
        assert trainable(learner) == EXPECTED[architecture]["film_per_task"]
    else:
        assert trainable(learner) == BACKBONE_PARAMETERS[architecture]


def test_the_cost_report_counts_the_published_film_parameters():
    torch.manual_seed(0)
    learner = build_learner("simple_cnaps", "tf_efficientnet_b0", image_size=32, pretrained=False)
    support = torch.rand(3, 3, 32, 32)
    cost = learner.adaptation_cost(support, torch.tensor([0, 1, 2]))
    d = FEATURE_DIM["efficientnet_b0"]
    # FiLM, then per class a mean (d) and a d x d Cholesky factor.
    assert cost.task_parameters == EXPECTED["efficientnet_b0"]["film_per_task"] + 3 * (d + d * d)
