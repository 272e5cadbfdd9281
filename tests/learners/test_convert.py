"""litemeta.learners.convert: reference state dicts (their key names and shapes written here)
become litemeta learners, tensor for tensor; anything that does not fit is refused by name."""

from collections import Counter

import pytest
import timm
import torch
import torch.nn.functional as F

from litemeta.cli import main
from litemeta.experiment.builders import build_model
from litemeta.experiment.settings import load_experiment
from litemeta.learners import CNAPs, ProtoNets, SimpleCNAPs, load_learner
from litemeta.learners.convert import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    model_overrides,
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
        for name, parameter in model.named_parameters():  # norms: not timm's 1 and 0
            if parameter.dim() == 1 and "bn" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
                parameter.add_(1.0 if name.endswith("weight") else 0.0)
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


def test_an_orbit_set_encoder_without_film_is_left_over(orbit_protonets_state):
    state = {
        **orbit_protonets_state,
        "set_encoder.encoder.layer1.0.weight": torch.zeros(64, 3, 3, 3),
    }
    with pytest.raises(ConversionError, match=r"1 tensors with no counterpart.*set_encoder"):
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


# LITE (src/model.py): ``feature_extractor`` is lukemelas' EfficientNet-PyTorch B0
# (efficientnet.py), ``set_encoder.pre_pooling_fn`` five conv-BatchNorm-ReLU-maxpool layers
# (set_encoder.py), ``feature_adaptation_network.layers`` one FilmLayerGenerator per FiLM layer
# (features.py): DenseBlock linear1 (e, e), layernorm (e), linear2 (c, e) for gamma and for
# beta, and regulariser vectors of c. EfficientNet-B0 (Tan & Le, ICML 2019, Table 1), stages of
# MBConv blocks: expansion, kernel, output channels, repeats; the stem has 32 channels, the
# head 1280; squeeze-excitation reduces a block's input channels by 4.
B0_STAGES = [(1, 3, 16, 1), (6, 3, 24, 2), (6, 5, 40, 2), (6, 3, 80, 3), (6, 5, 112, 3)]
B0_STAGES += [(6, 5, 192, 4), (6, 3, 320, 1)]
EMBEDDING = 64


def _batch_norm(shapes: dict, prefix: str, channels: int) -> None:
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{leaf}"] = (channels,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def lite_shapes() -> tuple[dict[str, tuple], list[int]]:
    """LITE's state-dict names and shapes, and the channels of its FiLM layers in order."""
    shapes: dict[str, tuple] = {}
    extractor = "feature_extractor."
    shapes[extractor + "_conv_stem.weight"] = (32, 3, 3, 3)
    _batch_norm(shapes, extractor + "_bn0", 32)
    film, block, inputs = [32], 0, 32
    for expansion, kernel, outputs, repeats in B0_STAGES:
        for _ in range(repeats):
            middle, squeezed = inputs * expansion, max(1, inputs // 4)
            prefix = f"{extractor}_blocks.{block}."
            if expansion != 1:
                shapes[prefix + "_expand_conv.weight"] = (middle, inputs, 1, 1)
                _batch_norm(shapes, prefix + "_bn0", middle)
            shapes[prefix + "_depthwise_conv.weight"] = (middle, 1, kernel, kernel)
            _batch_norm(shapes, prefix + "_bn1", middle)
            shapes[prefix + "_se_reduce.weight"] = (squeezed, middle, 1, 1)
            shapes[prefix + "_se_reduce.bias"] = (squeezed,)
            shapes[prefix + "_se_expand.weight"] = (middle, squeezed, 1, 1)
            shapes[prefix + "_se_expand.bias"] = (middle,)
            shapes[prefix + "_project_conv.weight"] = (outputs, middle, 1, 1)
            _batch_norm(shapes, prefix + "_bn2", outputs)
            film.append(middle)
            block, inputs = block + 1, outputs
    shapes[extractor + "_conv_head.weight"] = (1280, 320, 1, 1)
    _batch_norm(shapes, extractor + "_bn1", 1280)
    film.append(1280)
    shapes[extractor + "_fc.weight"] = (0, 1280)  # from_pretrained(num_classes=0)
    shapes[extractor + "_fc.bias"] = (0,)
    for layer in range(1, 6):
        prefix = f"set_encoder.pre_pooling_fn.layer{layer}."
        shapes[prefix + "0.weight"] = (64, 3 if layer == 1 else 64, 3, 3)
        shapes[prefix + "0.bias"] = (64,)
        _batch_norm(shapes, prefix + "1", 64)
    for layer, channels in enumerate(film):
        prefix = f"feature_adaptation_network.layers.{layer}."
        for kind in ("gamma", "beta"):
            network = f"{prefix}{kind}_generators.0."
            shapes[network + "linear1.weight"] = (EMBEDDING, EMBEDDING)
            shapes[network + "linear1.bias"] = (EMBEDDING,)
            shapes[network + "layernorm.weight"] = (EMBEDDING,)
            shapes[network + "layernorm.bias"] = (EMBEDDING,)
            shapes[network + "linear2.weight"] = (channels, EMBEDDING)
            shapes[network + "linear2.bias"] = (channels,)
            shapes[f"{prefix}{kind}_regularizers.0"] = (channels,)
    return shapes, film


@pytest.fixture
def lite_state():
    generator = torch.Generator().manual_seed(3)
    state = {}
    for key, shape in lite_shapes()[0].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(11)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state


def test_the_lite_table_has_the_published_counts():
    shapes, film = lite_shapes()
    assert len(film) == 18 and sum(film) == 10_272  # LITE: stem, 16 depthwise norms, head
    generator = sum(
        torch.Size(shape).numel()
        for key, shape in shapes.items()
        if key.startswith("feature_adaptation_network.")
    )
    assert generator == 1_510_272


def test_lite_becomes_simple_cnaps_tensor_for_tensor(lite_state):
    conversion = convert_state_dict("lite", lite_state)
    learner = conversion.learner
    assert isinstance(learner, SimpleCNAPs)
    assert learner.backbone.name == "tf_efficientnet_b0" and learner.backbone.image_size == 224
    assert learner.set_encoder.image_size == 224
    assert sorted(conversion.ignored) == [
        "feature_extractor._fc.bias",
        "feature_extractor._fc.weight",
    ]
    converted = learner.state_dict()
    assert conversion.mapped == len(converted) == len(lite_state) - 2
    # lukemelas' names -> timm's, written out for the stem, a block without expansion, one
    # with it (the 2nd block of the 6th stage is the 13th block), the head.
    expected = {
        "_conv_stem.weight": "conv_stem.weight",
        "_bn0.running_var": "bn1.running_var",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.0._bn1.weight": "blocks.0.0.bn1.weight",
        "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
        "_blocks.0._bn2.num_batches_tracked": "blocks.0.0.bn2.num_batches_tracked",
        "_blocks.12._expand_conv.weight": "blocks.5.1.conv_pw.weight",
        "_blocks.12._bn0.bias": "blocks.5.1.bn1.bias",
        "_blocks.12._depthwise_conv.weight": "blocks.5.1.conv_dw.weight",
        "_blocks.12._bn1.running_mean": "blocks.5.1.bn2.running_mean",
        "_blocks.12._se_reduce.bias": "blocks.5.1.se.conv_reduce.bias",
        "_blocks.12._se_expand.weight": "blocks.5.1.se.conv_expand.weight",
        "_blocks.12._project_conv.weight": "blocks.5.1.conv_pwl.weight",
        "_blocks.12._bn2.weight": "blocks.5.1.bn3.weight",
        "_conv_head.weight": "conv_head.weight",
        "_bn1.bias": "bn2.bias",
    }
    for lite_key, timm_key in expected.items():
        assert torch.equal(
            converted[f"backbone.model.{timm_key}"], lite_state[f"feature_extractor.{lite_key}"]
        )
    assert torch.equal(
        converted["film_generator.beta_generators.17.3.weight"],
        lite_state["feature_adaptation_network.layers.17.beta_generators.0.linear2.weight"],
    )
    assert torch.equal(
        converted["film_generator.gamma_regularizers.5"],
        lite_state["feature_adaptation_network.layers.5.gamma_regularizers.0"],
    )

    # Each source tensor (but the empty classifier) fills exactly one learner tensor.
    def fingerprints(tensors):
        return Counter(
            (tuple(v.shape), tuple(v.flatten()[:3].tolist()), v.sum().item()) for v in tensors
        )

    used = [v for k, v in lite_state.items() if k not in conversion.ignored]
    assert fingerprints(converted.values()) == fingerprints(used)


def test_lite_film_parameters_are_lites_formula(lite_state):
    """features.py FilmLayerGenerator: gamma = g(z) * r_gamma + 1, beta = b(z) * r_beta, with
    DenseBlock linear1 -> layernorm -> relu -> linear2."""
    learner = convert_state_dict("lite", lite_state, image_size=64).learner
    z = torch.randn(EMBEDDING, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        film = learner.film_generator(z)
    for layer in (0, 9, 17):
        prefix = f"feature_adaptation_network.layers.{layer}."
        for position, kind in enumerate(("gamma", "beta")):
            net = {
                k.removeprefix(f"{prefix}{kind}_generators.0."): v for k, v in lite_state.items()
            }
            hidden = net["linear1.weight"] @ z + net["linear1.bias"]
            hidden = (hidden - hidden.mean()) / (hidden.var(unbiased=False) + 1e-5).sqrt()
            hidden = (hidden * net["layernorm.weight"] + net["layernorm.bias"]).clamp(min=0)
            out = (net["linear2.weight"] @ hidden + net["linear2.bias"]) * lite_state[
                f"{prefix}{kind}_regularizers.0"
            ]
            expected = out + 1 if kind == "gamma" else out
            torch.testing.assert_close(film[layer][position], expected)


def lite_set_encoder(state: dict, images: torch.Tensor, batch_statistics: bool) -> torch.Tensor:
    """set_encoder.py SimplePrePoolNet on images scaled to [-1, 1] (LITE's readers): conv,
    BatchNorm (eps 1e-5), ReLU, 2x2 max-pool, five times, then the spatial mean. BatchNorm
    with the running statistics (eval mode) or with the batch's own (train mode: the mean
    and the biased variance over images and positions)."""
    x = (images - 0.5) / 0.5
    for layer in range(1, 6):
        p = f"set_encoder.pre_pooling_fn.layer{layer}."
        x = F.conv2d(x, state[p + "0.weight"], state[p + "0.bias"], padding=1)
        if batch_statistics:
            mean = x.mean(dim=(0, 2, 3))
            var = (x - mean.view(1, -1, 1, 1)).square().mean(dim=(0, 2, 3))
        else:
            mean, var = state[p + "1.running_mean"], state[p + "1.running_var"]
        x = (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + 1e-5).sqrt()
        x = x * state[p + "1.weight"].view(1, -1, 1, 1) + state[p + "1.bias"].view(1, -1, 1, 1)
        x = F.max_pool2d(x.clamp(min=0), 2)
    return x.mean(dim=(2, 3))


def test_lite_set_encoder_runs_with_lites_stored_statistics_as_frozen_batch(lite_state):
    learner = convert_state_dict(
        "lite", lite_state, image_size=64, encoder_norm="frozen_batch"
    ).learner.train()
    assert learner.options["encoder_norm"] == "frozen_batch"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            learner.set_encoder(images), lite_set_encoder(lite_state, images, False)
        )
    assert learner.meta_training_error() is None


def test_lite_set_encoder_runs_with_batch_statistics_as_lites_test_code_by_default(lite_state):
    """LITE's run.py keeps its model in train mode, so at test time its set encoder
    normalises each batch of --batch_size 40 support images with that batch's statistics;
    the stored running statistics are left as they are."""
    learner = convert_state_dict("lite", lite_state, image_size=64).learner.eval()
    assert learner.options["encoder_norm"] == "batch"
    assert learner.options["encoder_batch_size"] == 40
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            learner.set_encoder(images), lite_set_encoder(lite_state, images, True)
        )
    stored = learner.state_dict()["set_encoder.layers.1.running_mean"]
    assert torch.equal(stored, lite_state["set_encoder.pre_pooling_fn.layer1.1.running_mean"])
    assert "frozen_batch" in learner.meta_training_error()


def test_the_command_prints_lites_test_time_set_encoder_and_how_to_meta_train(
    tmp_path, capsys, lite_state
):
    source, output = tmp_path / "lite.pt", tmp_path / "learner.pt"
    torch.save(lite_state, source)
    assert main(["convert", "--from", "lite", str(source), str(output)]) == 0
    printed = capsys.readouterr().out
    assert "model.options.encoder_norm=batch" in printed
    assert "model.options.encoder_batch_size=40" in printed
    assert "convert with --encoder-norm frozen_batch" in printed
    frozen = tmp_path / "frozen.pt"
    arguments = ["convert", "--from", "lite", str(source), str(frozen)]
    assert main([*arguments, "--encoder-norm", "frozen_batch"]) == 0
    assert "model.options.encoder_norm=frozen_batch" in capsys.readouterr().out
    assert load_learner(frozen).meta_training_error() is None
    with pytest.raises(ConversionError, match="encoder_norm must be one of"):
        convert_state_dict("lite", lite_state, encoder_norm="instance")


def test_lite_is_only_simple_cnaps_on_tf_efficientnet_b0(lite_state):
    with pytest.raises(ConversionError, match="use --learner simple_cnaps"):
        convert_state_dict("lite", lite_state, learner="protonets")
    with pytest.raises(ConversionError, match="cannot become 'efficientnet_b0'"):
        convert_state_dict("lite", lite_state, backbone="efficientnet_b0")


def test_lite_with_film_for_other_layers_is_refused(lite_state):
    """A generator for 16 layers (FiLM on the depthwise norms only) is another architecture."""
    state = {
        k: v
        for k, v in lite_state.items()
        if not k.startswith(
            ("feature_adaptation_network.layers.16.", "feature_adaptation_network.layers.17.")
        )
    }
    with pytest.raises(ConversionError, match=r"for 16 layers.*has 18 FiLM layers"):
        convert_state_dict("lite", state)


def test_a_lite_classifier_with_classes_is_left_over(lite_state):
    lite_state["feature_extractor._fc.weight"] = torch.zeros(1000, 1280)
    lite_state["feature_extractor._fc.bias"] = torch.zeros(1000)
    with pytest.raises(ConversionError, match=r"2 tensors with no counterpart.*_fc\.bias"):
        convert_state_dict("lite", lite_state)


@pytest.mark.parametrize(
    ("source", "fixture"),
    [("lite", "lite_state"), ("orbit", "orbit_protonets_state"), ("orbit", "orbit_simple_cnaps")],
)
def test_the_printed_settings_build_the_converted_learner(source, fixture, request):
    """``litemeta evaluate --checkpoint FILE`` builds its learner from the shipped default
    config with the overrides `litemeta convert` prints: the same description, so the
    converted weights load."""
    state = request.getfixturevalue(fixture)
    state = state[0] if isinstance(state, tuple) else state
    learner = convert_state_dict(source, state).learner
    config = load_experiment("default", model_overrides(learner))
    assert build_model(config.model).config() == learner.config()


# ORBIT with --adapt_features (model/film.py, feature_adapters.py, set_encoders.py,
# classifier_heads.py): FiLM on the root's bn1 and bn2 and on bn2 of every InvertedResidual
# block, i.e. every block of EfficientNet-B0 but the first (a DepthwiseSeparableConv); one
# generator (DenseBlock: block.0 Linear(64, 64), block.1 LayerNorm(64), block.3 Linear(64, c))
# and one regulariser per modulated parameter, in the sorted order of the parameters' names;
# the set encoder as ``set_encoder.encoder``; CNAPs' head as ``classifier.weight_processor``
# and ``bias_processor`` (DenseResidualBlock linear1..3).
def orbit_film_norms(extractor) -> list[str]:
    blocks = [
        f"blocks.{s}.{b}" for s, stage in enumerate(extractor.blocks) for b in range(len(stage))
    ]
    return ["bn1", *[f"{block}.bn2" for block in blocks[1:]], "bn2"]


def orbit_film_state(extractor, protonets_state, head: bool) -> dict:
    generator = torch.Generator().manual_seed(6)
    modules = dict(extractor.named_modules())
    names = sorted(
        f"{n}.{leaf}" for n in orbit_film_norms(extractor) for leaf in ("weight", "bias")
    )
    shapes: dict[str, tuple] = {}
    for layer in range(1, 6):
        prefix = f"set_encoder.encoder.layer{layer}."
        shapes[prefix + "0.weight"] = (64, 3 if layer == 1 else 64, 3, 3)
        shapes[prefix + "0.bias"] = (64,)
        _batch_norm(shapes, prefix + "1", 64)
    for index, name in enumerate(names):
        channels = modules[name.rsplit(".", 1)[0]].num_features
        prefix = f"film_generator.generators.{index}.block."
        shapes |= {prefix + "0.weight": (64, 64), prefix + "0.bias": (64,)}
        shapes |= {prefix + "1.weight": (64,), prefix + "1.bias": (64,)}
        shapes |= {prefix + "3.weight": (channels, 64), prefix + "3.bias": (channels,)}
        shapes[f"film_generator.regularizers.{index}"] = (channels,)
    if head:
        for processor, out in (("weight_processor", 1280), ("bias_processor", 1)):
            for position, (rows, columns) in enumerate([(out, 1280), (out, out), (out, out)], 1):
                shapes[f"classifier.{processor}.linear{position}.weight"] = (rows, columns)
                shapes[f"classifier.{processor}.linear{position}.bias"] = (rows,)
    state = dict(protonets_state)
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.3
    return state, names


@pytest.fixture
def orbit_simple_cnaps(orbit_extractor, orbit_protonets_state):
    return orbit_film_state(orbit_extractor, orbit_protonets_state, head=False)


def test_orbit_simple_cnaps_becomes_simple_cnaps(orbit_simple_cnaps, orbit_extractor):
    state, names = orbit_simple_cnaps
    assert len(names) == 2 * 17
    conversion = convert_state_dict("orbit", state)
    learner = conversion.learner
    assert isinstance(learner, SimpleCNAPs)
    assert learner.options["encoder_norm"] == "frozen_batch"
    assert learner.set_encoder.image_size == 224
    # ORBIT's set encoder sees the frames its backbone sees: ImageNet's mean and std.
    torch.testing.assert_close(learner.set_encoder.mean, IMAGENET_MEAN.flatten())
    torch.testing.assert_close(learner.set_encoder.std, IMAGENET_STD.flatten())
    converted = learner.state_dict()
    assert torch.equal(
        converted["set_encoder.layers.4.weight"], state["set_encoder.encoder.layer2.0.weight"]
    )
    assert torch.equal(
        converted["set_encoder.layers.5.running_var"],
        state["set_encoder.encoder.layer2.1.running_var"],
    )
    # The gamma generator of blocks.1.0.bn2 (litemeta's FiLM layer 2) is ORBIT's generator
    # of that norm's weight.
    index = names.index("blocks.1.0.bn2.weight")
    assert learner.backbone.film_layers[2].name == "blocks.1.0.bn2"
    for ours, theirs in (("0", "0"), ("1", "1"), ("3", "3")):
        assert torch.equal(
            converted[f"film_generator.gamma_generators.2.{ours}.weight"],
            state[f"film_generator.generators.{index}.block.{theirs}.weight"],
        )
    assert torch.equal(
        converted["film_generator.gamma_regularizers.2"],
        state[f"film_generator.regularizers.{index}"],
    )


def test_orbit_film_is_the_same_function_as_orbits(orbit_simple_cnaps):
    """ORBIT sets a modulated norm's weight to w * (1 + r_w g_w(z)) and its bias to
    b + r_b g_b(z) (feature_adapters.py); the converted learner's norm followed by its FiLM
    gives the same output, and the norm ORBIT leaves alone gets the identity."""
    state, names = orbit_simple_cnaps
    learner = convert_state_dict("orbit", state, image_size=64).learner
    z = torch.randn(64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        film = learner.film_generator(z)
    modules = dict(learner.backbone.model.named_modules())

    def orbit_generated(name: str) -> torch.Tensor:
        index = names.index(name)
        block = {
            k.removeprefix(f"film_generator.generators.{index}.block."): v for k, v in state.items()
        }
        hidden = block["0.weight"] @ z + block["0.bias"]
        hidden = (hidden - hidden.mean()) / (hidden.var(unbiased=False) + 1e-5).sqrt()
        hidden = (hidden * block["1.weight"] + block["1.bias"]).clamp(min=0)
        return (block["3.weight"] @ hidden + block["3.bias"]) * state[
            f"film_generator.regularizers.{index}"
        ]

    x = torch.randn(2, 1280, 3, 3, generator=torch.Generator().manual_seed(8))
    for layer, film_layer in enumerate(learner.backbone.film_layers):
        name, norm = film_layer.name, modules[film_layer.name]
        mean, var = (
            state[f"feature_extractor.{name}.running_mean"],
            state[f"feature_extractor.{name}.running_var"],
        )
        inputs = x[:, : mean.numel()]
        normalised = (inputs - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + norm.eps).sqrt()
        weight, bias = (
            state[f"feature_extractor.{name}.weight"],
            state[f"feature_extractor.{name}.bias"],
        )
        if name == "blocks.0.0.bn1":  # not modulated by ORBIT
            assert torch.equal(film[layer][0], torch.ones_like(weight))
            assert torch.equal(film[layer][1], torch.zeros_like(bias))
            weight_orbit, bias_orbit = weight, bias
        else:
            weight_orbit = weight * (1 + orbit_generated(f"{name}.weight"))
            bias_orbit = bias + orbit_generated(f"{name}.bias")
        orbit = normalised * weight_orbit.view(1, -1, 1, 1) + bias_orbit.view(1, -1, 1, 1)
        with torch.no_grad():
            ours = F.batch_norm(
                inputs, norm.running_mean, norm.running_var, norm.weight, norm.bias, eps=norm.eps
            )
            ours = ours * film[layer][0].view(1, -1, 1, 1) + film[layer][1].view(1, -1, 1, 1)
        torch.testing.assert_close(ours, orbit, rtol=1e-5, atol=1e-5)


def test_orbit_cnaps_maps_its_head(orbit_extractor, orbit_protonets_state):
    state, _ = orbit_film_state(orbit_extractor, orbit_protonets_state, head=True)
    learner = convert_state_dict("orbit", state).learner
    assert isinstance(learner, CNAPs)
    converted = learner.state_dict()
    for ours, theirs in (
        ("weight_network", "weight_processor"),
        ("bias_network", "bias_processor"),
    ):
        for position, linear in (("0", "linear1"), ("2", "linear2"), ("4", "linear3")):
            assert torch.equal(
                converted[f"classifier_adaptation.{ours}.layers.{position}.bias"],
                state[f"classifier.{theirs}.{linear}.bias"],
            )
    with pytest.raises(ConversionError, match="use --learner cnaps"):
        convert_state_dict("orbit", state, learner="simple_cnaps")


def test_a_zero_orbit_bias_regulariser_under_a_nonzero_bias_is_refused(orbit_simple_cnaps):
    state, names = orbit_simple_cnaps
    state[f"film_generator.regularizers.{names.index('bn2.bias')}"][3] = 0.0
    with pytest.raises(ConversionError, match=r"regulariser of bn2\.bias is 0.*channels \[3\]"):
        convert_state_dict("orbit", state)
