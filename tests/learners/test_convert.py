"""litemeta.learners.convert: reference state dicts (their key names and shapes written here)
become litemeta learners, tensor for tensor; anything that does not fit is refused by name."""

import pytest
import timm
import torch

from litemeta.cli import main
from litemeta.learners import ProtoNets, load_learner
from litemeta.learners.convert import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    read_source_state_dict,
)

# ORBIT (model/feature_extractors.py) builds timm's tf_efficientnet_b0 with num_classes=0 and
# stores it as ``feature_extractor``; its ProtoNets (--classifier proto, no --adapt_features)
# has no other tensors. Frames are normalised with ImageNet's mean and std
# (data/datasets.py, frame_norm_method 'imagenet').
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def orbit_extractor():
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_b0", num_classes=0).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
    return model


@pytest.fixture
def orbit_protonets_state(orbit_extractor):
    return {f"feature_extractor.{k}": v.clone() for k, v in orbit_extractor.state_dict().items()}


def test_orbit_protonets_becomes_protonets_on_the_same_weights(orbit_protonets_state):
    conversion = convert_state_dict("orbit", orbit_protonets_state)
    learner = conversion.learner
    assert isinstance(learner, ProtoNets) and learner.options["meta_train"] == "backbone"
    assert learner.backbone.name == "timm:tf_efficientnet_b0"
    assert learner.backbone.image_size == 224
    converted = learner.state_dict()
    assert conversion.mapped == len(orbit_protonets_state) == len(converted)
    for key, value in orbit_protonets_state.items():
        assert torch.equal(
            converted["backbone.model." + key.removeprefix("feature_extractor.")], value
        )
    assert conversion.ignored == {}


def test_orbit_protonets_logits_are_orbits_up_to_each_querys_squared_norm(
    orbit_protonets_state, orbit_extractor
):
    """ORBIT's PrototypicalClassifier: logits 2 mu_k . x - mu_k . mu_k (its classifier_heads.py),
    i.e. -||x - mu_k||^2 + ||x||^2, on features of ImageNet-normalised frames."""
    learner = convert_state_dict("orbit", orbit_protonets_state, image_size=32).learner
    generator = torch.Generator().manual_seed(2)
    support = torch.rand(4, 3, 32, 32, generator=generator)
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.rand(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        classifier = learner.adapt(support, labels)
        logits = classifier(query)
        support_features = orbit_extractor((support - IMAGENET_MEAN) / IMAGENET_STD)
        query_features = orbit_extractor((query - IMAGENET_MEAN) / IMAGENET_STD)
    means = torch.stack([support_features[labels == c].mean(0) for c in (0, 1)])
    orbit_logits = 2 * query_features @ means.T - (means * means).sum(1)
    expected = orbit_logits - (query_features * query_features).sum(1, keepdim=True)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-3)


def test_orbit_task_state_left_in_a_checkpoint_is_ignored_and_listed(orbit_protonets_state):
    state = {**orbit_protonets_state, "classifier.weight": torch.ones(5, 1280)}
    conversion = convert_state_dict("orbit", state)
    assert list(conversion.ignored) == ["classifier.weight"]
    assert "last task" in conversion.ignored["classifier.weight"]


def test_a_missing_tensor_is_refused_by_name(orbit_protonets_state):
    del orbit_protonets_state["feature_extractor.blocks.3.1.conv_dw.weight"]
    with pytest.raises(ConversionError, match=r"lacks 1 tensors.*blocks\.3\.1\.conv_dw\.weight"):
        convert_state_dict("orbit", orbit_protonets_state)


def test_a_tensor_left_over_is_refused_by_name(orbit_protonets_state):
    orbit_protonets_state["feature_extractor.extra.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"1 tensors with no counterpart.*extra\.weight"):
        convert_state_dict("orbit", orbit_protonets_state)


def test_a_tensor_of_another_shape_is_refused_with_both_shapes(orbit_protonets_state):
    orbit_protonets_state["feature_extractor.bn2.weight"] = torch.ones(1000)
    with pytest.raises(ConversionError, match=r"bn2\.weight \(1000,\) -> .*bn2\.weight \(1280,\)"):
        convert_state_dict("orbit", orbit_protonets_state)


def test_an_unknown_source_is_refused():
    with pytest.raises(ConversionError, match=r"unknown source 'tensorflow'.*lite, orbit"):
        convert_state_dict("tensorflow", {})


def test_orbit_with_generated_film_is_refused_saying_why(orbit_protonets_state):
    state = {
        **orbit_protonets_state,
        "set_encoder.encoder.layer1.0.weight": torch.zeros(64, 3, 3, 3),
        "film_generator.regularizers.0": torch.zeros(32),
    }
    with pytest.raises(ConversionError, match=r"batch norm's own scale and shift.*17 layers"):
        convert_state_dict("orbit", state)


def test_orbit_without_film_is_only_protonets(orbit_protonets_state):
    with pytest.raises(ConversionError, match="use --learner protonets"):
        convert_state_dict("orbit", orbit_protonets_state, learner="simple_cnaps")


def test_a_file_without_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ConversionError, match="holds no state dict"):
        read_source_state_dict(path)


def test_a_reference_training_checkpoint_is_unwrapped(tmp_path, orbit_protonets_state):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model_state_dict": orbit_protonets_state, "epoch": 3}, path)
    assert read_source_state_dict(path).keys() == orbit_protonets_state.keys()


def test_the_converted_file_loads_with_load_learner(tmp_path, orbit_protonets_state):
    source, output = tmp_path / "orbit.pth", tmp_path / "learner.pt"
    torch.save(orbit_protonets_state, source)
    conversion = convert_checkpoint("orbit", source, output)
    loaded = load_learner(output)
    assert loaded.config() == conversion.learner.config()
    for key, value in conversion.learner.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_the_command_converts_and_prints_the_evaluate_settings(
    tmp_path, capsys, orbit_protonets_state
):
    source, output = tmp_path / "orbit.pth", tmp_path / "out" / "learner.pt"
    torch.save(orbit_protonets_state, source)
    assert main(["convert", "--from", "orbit", str(source), str(output)]) == 0
    printed = capsys.readouterr().out
    assert (
        "converted 358 tensors" in printed
        and "into protonets on timm:tf_efficientnet_b0" in printed
    )
    assert f"litemeta evaluate --checkpoint {output} model.learner=protonets" in printed
    assert "model.options.distance_scale=null" in printed
    assert load_learner(output).name == "protonets"


def test_the_command_reports_a_refusal_in_one_line(tmp_path, capsys, orbit_protonets_state):
    del orbit_protonets_state["feature_extractor.conv_stem.weight"]
    source = tmp_path / "orbit.pth"
    torch.save(orbit_protonets_state, source)
    assert main(["convert", "--from", "orbit", str(source), str(tmp_path / "x.pt")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("litemeta: error: the orbit checkpoint lacks 1 tensors")
    assert "feature_extractor.conv_stem.weight" in error
    assert not (tmp_path / "x.pt").exists()
