"""The shared base of backbone learners: the support map in chunks or through LITE, in
float32; parameter groups at the backbone's rate; the options each learner takes."""

import pytest
import torch

from litemeta.backbones import Backbone
from litemeta.learners import CNAPs, ProtoNets, SimpleCNAPs
from litemeta.learners.backbone_learner import DEFAULT_CHUNK_SIZE, option_names
from litemeta.lite import LitePass, LiteSettings

from .helpers import TinyCNN


def _learner(*, pretrained: bool = False, **options) -> ProtoNets:
    torch.manual_seed(0)
    backbone = Backbone(
        TinyCNN(), name="tiny", image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, pretrained=pretrained
    )
    return ProtoNets(backbone, **options)


def test_the_support_map_runs_in_chunks_and_equals_one_pass():
    learner = _learner()
    learner.chunk_size = 3
    images = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    batches = []

    def embed(batch):
        batches.append(len(batch))
        return learner.backbone(batch)

    with torch.no_grad():
        whole = learner.backbone(images)
        chunked = learner.map_support(embed, images, labels, None)
    assert batches == [3, 3, 1]
    torch.testing.assert_close(chunked, whole)
    lite = LitePass(LiteSettings(h=2), torch.Generator().manual_seed(0))
    through_lite = learner.map_support(learner.backbone, images, labels, lite)
    torch.testing.assert_close(through_lite, whole)  # LITE keeps the forward values
    assert through_lite.requires_grad


def test_the_support_map_returns_float32_for_half_precision_features():
    learner = _learner()
    images = torch.rand(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 0, 1])

    def half(batch):
        return learner.backbone(batch).to(torch.bfloat16)

    with torch.no_grad():
        features = learner.map_support(half, images, labels, None)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, half(images).float())


def test_the_backbone_trains_at_a_tenth_of_the_rate_when_pretrained():
    pretrained = _learner(pretrained=True, distance_scale=0.5)
    backbone_group, head_group = pretrained.parameter_groups(1e-2)
    assert (backbone_group["name"], head_group["name"]) == ("backbone", "head")
    assert backbone_group["lr"] == pytest.approx(1e-3) and head_group["lr"] == 1e-2
    assert len(backbone_group["params"]) == len(list(pretrained.backbone.parameters()))
    assert head_group["params"] == [pretrained.log_distance_scale]
    assert pretrained.options["backbone_lr_scale"] == 0.1  # recorded as resolved
    random = _learner()
    assert [(g["name"], g["lr"]) for g in random.parameter_groups(1e-2)] == [("backbone", 1e-2)]
    chosen = _learner(pretrained=True, backbone_lr_scale=0.5)
    assert chosen.parameter_groups(1e-2)[0]["lr"] == pytest.approx(5e-3)


def test_each_learner_takes_its_own_options_and_those_of_its_bases():
    assert option_names(ProtoNets) == [
        "meta_train",
        "distance_scale",
        "backbone_lr_scale",
    ]
    adaptation = [
        "encoder_image_size",
        "encoder_channels",
        "encoder_norm",
        "encoder_input_norm",
        "encoder_batch_size",
        "film_regularization",
        "train_backbone",
        "backbone_lr_scale",
    ]
    assert option_names(CNAPs) == adaptation
    assert option_names(SimpleCNAPs) == ["single_example_covariance", *adaptation]


def test_the_chunk_size_is_a_run_time_setting_with_one_check():
    learner = _learner()
    assert learner.chunk_size == DEFAULT_CHUNK_SIZE == 64
    assert "chunk_size" not in learner.config()["options"]
    with pytest.raises(ValueError, match="chunk_size must be at least 1 image, got 0"):
        learner.chunk_size = 0
    with pytest.raises(TypeError, match=r"chunk_size must be a whole number, got 2\.5"):
        learner.chunk_size = 2.5
    with pytest.raises(TypeError, match="unexpected keyword argument 'chunk_size'"):
        _learner(chunk_size=8)
