"""The shipped benchmark configs train with one Adam rate, as LITE and ORBIT do."""

import pytest

from litemeta.experiment import build_model, load_experiment

#: The offline pretrained backbone at a small size, whatever the config's backbone.
SMALL_MODEL = ["model.backbone=efficientnet_lite0", "model.image_size=32"]


@pytest.mark.parametrize("config", ["orbit", "meta-dataset", "vtab", "paper-vtab", "paper-md"])
@pytest.mark.parametrize("learner", ["protonets", "cnaps", "simple_cnaps"])
def test_a_pretrained_backbone_gets_the_same_rate_as_everything_else(config, learner):
    overrides = [*SMALL_MODEL, f"model.learner={learner}"]
    if learner != "protonets":  # meta-train the backbone too
        overrides.append("model.options={encoder_image_size: 32, train_backbone: true}")
    experiment = load_experiment(config, overrides)
    model = build_model(experiment.model)
    assert model.backbone.pretrained
    groups = model.parameter_groups(1e-4)
    assert {group["name"] for group in groups} >= {"backbone"}
    assert [group["lr"] for group in groups] == [1e-4] * len(groups)


def test_the_emoji_default_keeps_a_lower_rate_for_the_pretrained_backbone():
    experiment = load_experiment("default", SMALL_MODEL)
    groups = build_model(experiment.model).parameter_groups(1e-3)
    assert [group["lr"] for group in groups if group["name"] == "backbone"] == [1e-4]
