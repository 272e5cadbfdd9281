"""Learners rebuild from their JSON config and load from plain state-dict checkpoints."""

import json

import pytest
import torch

from litemeta.learners import LEARNERS, build_learner, load_learner, save_learner

from .helpers import BACKBONE_SIZE, meta_train

OPTIONS = {
    "protonets": {"meta_train": "film"},
    "cnaps": {"encoder_image_size": 16, "encoder_channels": 8},
    "simple_cnaps": {"encoder_image_size": 16, "encoder_channels": 8},
    "finetuner": {"steps": 3},
}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_saved_learners_load_with_weights_only_and_predict_the_same(name, task, tmp_path):
    learner = build_learner(name, image_size=BACKBONE_SIZE, **OPTIONS[name])
    if learner.meta_trainable:
        meta_train(learner, steps=1, h=4, lr=1e-2)
    path = tmp_path / "learner.pt"
    save_learner(learner, path)
    checkpoint = torch.load(path, weights_only=True)
    assert json.loads(json.dumps(checkpoint["config"])) == learner.config()
    loaded = load_learner(path).eval()
    support, support_labels, query, _ = task
    with torch.no_grad():
        expected = learner.eval().adapt(support, support_labels)(query)
        torch.testing.assert_close(loaded.adapt(support, support_labels)(query), expected)


def test_config_names_the_learner_backbone_and_options():
    learner = build_learner("cnaps", image_size=BACKBONE_SIZE, **OPTIONS["cnaps"])
    config = learner.config()
    assert config["learner"] == "cnaps"
    assert config["backbone"] == {"name": "efficientnet_lite0", "image_size": BACKBONE_SIZE}
    assert config["options"]["encoder_channels"] == 8
    assert config["options"]["backbone_lr_scale"] == 0.1  # pretrained backbone
