"""Learners rebuild from their JSON config and load from their checkpoints."""

import json

import pytest
import torch

from litemeta.checkpoint import (
    ModelMismatchError,
    TrainingState,
    check_model_config,
    describe_model,
    load_checkpoint,
    load_model_weights,
    model_fingerprint,
    save_model,
)
from litemeta.config import ConfigError
from litemeta.learners import (
    LEARNERS,
    build_learner,
    learner_from_config,
    load_learner,
    save_learner,
)
from litemeta.training import read_resumable_checkpoint

from .helpers import BACKBONE_SIZE, meta_train, tiny_options

#: Shared FiLM parameters make ProtoNets' state dict hold more than the backbone.
OPTIONS = {name: tiny_options(name) for name in LEARNERS} | {"protonets": {"meta_train": "film"}}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_saved_learners_load_with_weights_only_and_predict_the_same(name, task, tmp_path):
    learner = build_learner(name, image_size=BACKBONE_SIZE, **OPTIONS.get(name, {}))
    if learner.meta_trainable:
        meta_train(learner, steps=1, h=4, lr=1e-2)
    path = tmp_path / "learner.pt"
    save_learner(learner, path)
    checkpoint = load_checkpoint(path)  # checksum verified, then torch.load(weights_only=True)
    assert checkpoint["model_config"] == describe_model(learner, learner.config())
    loaded = load_learner(path).eval()
    support, support_labels, query, _ = task
    with torch.no_grad():
        expected = learner.eval().adapt(support, support_labels)(query)
        torch.testing.assert_close(loaded.adapt(support, support_labels)(query), expected)


def test_config_names_the_learner_backbone_and_options():
    learner = build_learner("cnaps", image_size=BACKBONE_SIZE, **OPTIONS["cnaps"])
    config = learner.config()
    assert config["learner"] == "cnaps"
    assert config["backbone"] == {
        "name": "efficientnet_lite0",
        "image_size": BACKBONE_SIZE,
        "film_placement": "published",
    }
    assert config["options"]["encoder_channels"] == 8
    assert config["options"]["backbone_lr_scale"] == 0.1  # pretrained backbone


def saved_as_before(learner, path, edit):
    """Save ``learner`` with its description edited as an earlier litemeta wrote it."""
    config = json.loads(json.dumps(learner.config()))
    edit(config)
    torch.save({"config": config, "state_dict": learner.state_dict()}, path)


def test_a_learner_saved_for_an_earlier_architecture_is_refused_naming_what_changed(tmp_path):
    learner = build_learner("simple_cnaps", image_size=BACKBONE_SIZE, **OPTIONS["simple_cnaps"])

    def before_the_published_architecture(config):
        del config["backbone"]["film_placement"]
        del config["options"]["single_example_covariance"]
        config["options"]["generator_hidden_dim"] = 64

    saved_as_before(learner, tmp_path / "old.pt", before_the_published_architecture)
    with pytest.raises(ConfigError, match=r"architecture differs .*generator_hidden_dim"):
        load_learner(tmp_path / "old.pt")

    def without_a_new_option(config):
        del config["options"]["single_example_covariance"]

    saved_as_before(learner, tmp_path / "older.pt", without_a_new_option)
    with pytest.raises(ConfigError, match="single_example_covariance: '<absent>' saved"):
        load_learner(tmp_path / "older.pt")


def test_a_learner_saved_before_film_placement_loads_with_film_after_every_norm(tmp_path):
    torch.manual_seed(0)
    learner = build_learner(
        "protonets", image_size=BACKBONE_SIZE, meta_train="film", film_placement="all"
    )
    saved_as_before(learner, tmp_path / "old.pt", lambda c: c["backbone"].pop("film_placement"))
    loaded = load_learner(tmp_path / "old.pt")
    assert loaded.backbone.film_placement == "all"
    assert len(loaded.film_gammas) == len(learner.backbone.film_layers)


def test_a_training_checkpoint_of_the_earlier_film_placement_is_refused():
    learner = build_learner("protonets", image_size=BACKBONE_SIZE)
    current = describe_model(learner, learner.config())
    earlier = json.loads(json.dumps(current))
    del earlier["backbone"]["film_placement"]
    checkpoint = {"model_config": earlier, "model_fingerprint": model_fingerprint(earlier)}
    with pytest.raises(ModelMismatchError, match=r"backbone\.film_placement: '<absent>'"):
        check_model_config(checkpoint, current, "last.pt")


def test_a_training_checkpoint_description_rebuilds_the_learner():
    learner = build_learner("simple_cnaps", image_size=BACKBONE_SIZE, **OPTIONS["simple_cnaps"])
    described = describe_model(learner, learner.config())  # also names the model class
    assert learner_from_config(described).config() == learner.config()


def test_a_saved_learner_of_an_unregistered_class_names_the_known_ones():
    """A custom learner saved in one process, loaded where its module was not imported."""
    config = build_learner("protonets", image_size=BACKBONE_SIZE).config()
    config["learner"] = "slow_protonets"
    with pytest.raises(ConfigError, match=r"unknown learner 'slow_protonets': choose one of"):
        learner_from_config(config)


def _saved_by_the_previous_version(learner, path, chunk_size, training=None):
    """What litemeta wrote while the chunk size was a learner option: the checkpoint format
    with ``chunk_size`` among the options of the learner's description."""
    config = json.loads(json.dumps(learner.config()))
    config["options"]["chunk_size"] = chunk_size
    save_model(path, learner, config, training)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("protonets", OPTIONS["protonets"]),
        # Batch statistics over batches of the chunk size: the saved chunk size matters.
        ("simple_cnaps", {**OPTIONS["simple_cnaps"], "encoder_norm": "batch"}),
    ],
)
def test_a_checkpoint_with_the_chunk_size_among_its_options_still_loads(
    name, options, task, tmp_path
):
    learner = build_learner(name, image_size=BACKBONE_SIZE, **options).eval()
    learner.chunk_size = 5
    path = tmp_path / "previous.pt"
    _saved_by_the_previous_version(learner, path, chunk_size=5)
    assert load_checkpoint(path)["model_config"]["options"]["chunk_size"] == 5

    loaded = load_learner(path).eval()
    assert loaded.chunk_size == 5 and loaded.config() == learner.config()
    assert "chunk_size" not in loaded.config()["options"]
    support, support_labels, query, _ = task
    with torch.no_grad():
        expected = learner.adapt(support, support_labels)(query)
        torch.testing.assert_close(loaded.adapt(support, support_labels)(query), expected)
    assert load_learner(path, chunk_size=7).chunk_size == 7

    fresh = build_learner(name, image_size=BACKBONE_SIZE, **options)
    load_model_weights(fresh, path, fresh.config(), withdrawn=fresh.withdrawn_settings)
    with pytest.raises(ModelMismatchError, match=r"options\.chunk_size: 5 in the checkpoint"):
        load_model_weights(fresh, path, fresh.config())  # not withdrawn: a difference


def test_a_run_saved_with_the_chunk_size_among_its_options_resumes(tmp_path):
    learner = build_learner("protonets", image_size=BACKBONE_SIZE)
    state = TrainingState(
        step=3,
        optimizer={},
        grad_scaler={},
        rng=[],
        world_size=1,
        config={},
        best_validation_accuracy=None,
    )
    path = tmp_path / "last.pt"
    _saved_by_the_previous_version(learner, path, chunk_size=64, training=state)
    described = describe_model(learner, learner.config())
    weights, resumed = read_resumable_checkpoint(
        path, described, steps=10, withdrawn=learner.withdrawn_settings
    )
    assert resumed.step == 3 and weights.keys() == learner.state_dict().keys()
    other = build_learner("protonets", image_size=BACKBONE_SIZE, meta_train="film")
    with pytest.raises(ModelMismatchError, match=r"options\.meta_train: 'backbone' in the"):
        read_resumable_checkpoint(
            path,
            describe_model(other, other.config()),
            steps=10,
            withdrawn=other.withdrawn_settings,
        )
