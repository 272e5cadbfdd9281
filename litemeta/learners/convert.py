"""Learners from the published checkpoints of the reference code.

Two sources (:data:`SOURCES`):

- ``"lite"``: the state dict of LITE's ``FewShotClassifier`` (cambridge-mlg/LITE,
  ``src/model.py``; Bronskill et al., NeurIPS 2021), Simple CNAPs on EfficientNet-B0 in
  lukemelas' EfficientNet-PyTorch naming, e.g. ``models/meta-trained_lite_224.pt``. It becomes
  a :class:`~litemeta.learners.SimpleCNAPs` on ``tf_efficientnet_b0`` (timm's port of the
  same network) with the published FiLM placement and a batch-norm set encoder.
- ``"orbit"``: the state dict of ORBIT's ``SingleStepFewShotRecogniser``
  (microsoft/ORBIT-Dataset, ``model/few_shot_recognisers.py``, the timm-based code that made
  the checkpoints its README lists). ProtoNets (``--classifier proto``, a meta-trained
  extractor and no FiLM) becomes a :class:`~litemeta.learners.ProtoNets`. Checkpoints with
  generated FiLM (ORBIT's CNAPs and Simple CNAPs) are refused: ORBIT's FiLM is a different
  function from litemeta's (see :data:`ORBIT_FILM_DIFFERENCES`).

The mapping tables below name every tensor of the learner and the source tensor it comes
from; every tensor is shape-checked; a source tensor nothing maps, or a learner tensor no
source tensor fills, refuses the conversion naming the keys (:class:`ConversionError`). The
only source tensors dropped are listed with their reason in :attr:`Conversion.ignored`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.factory import build_learner, save_learner

__all__ = [
    "LITE_BACKBONE",
    "ORBIT_BACKBONE",
    "ORBIT_FILM_DIFFERENCES",
    "SOURCES",
    "Conversion",
    "ConversionError",
    "convert_checkpoint",
    "convert_state_dict",
    "model_overrides",
    "read_source_state_dict",
]

SOURCES: tuple[str, ...] = ("lite", "orbit")

#: The litemeta backbone of LITE's EfficientNet-B0: the TensorFlow port (TF "same" padding,
#: batch-norm epsilon 1e-3) with LITE's input scaling to [-1, 1].
LITE_BACKBONE = "tf_efficientnet_b0"
#: ORBIT's EfficientNet-B0 is timm's ``tf_efficientnet_b0`` with ImageNet normalisation
#: (``data/datasets.py``, ``frame_norm_method='imagenet'``): timm's own settings.
ORBIT_BACKBONE = "timm:tf_efficientnet_b0"

#: Why a checkpoint of ORBIT with generated FiLM (``--adapt_features``) cannot become a
#: litemeta learner without changing what it computes.
ORBIT_FILM_DIFFERENCES = (
    "ORBIT's FiLM multiplies and adds to each batch norm's own scale and shift "
    "(weight * gamma, bias + beta: out = gamma * w * x_hat + b + beta), litemeta's (and LITE's) "
    "modulates the norm's output (gamma * (w * x_hat + b) + beta); ORBIT modulates 17 layers "
    "of EfficientNet-B0 (not the first block's depthwise norm), litemeta's published placement "
    "18; ORBIT's set encoder sees ImageNet-normalised images, litemeta's mean = std = 0.5"
)

# LITE's EfficientNet (lukemelas' EfficientNet-PyTorch) -> timm module names. A block with an
# expansion convolution is timm's InvertedResidual, one without its DepthwiseSeparableConv.
_LITE_STEM_AND_HEAD = {
    "conv_stem": "_conv_stem",
    "bn1": "_bn0",
    "conv_head": "_conv_head",
    "bn2": "_bn1",
}
_LITE_EXPANDED_BLOCK = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    "se.conv_reduce": "_se_reduce",
    "se.conv_expand": "_se_expand",
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}
_LITE_DEPTHWISE_BLOCK = {
    "conv_dw": "_depthwise_conv",
    "bn1": "_bn1",
    "se.conv_reduce": "_se_reduce",
    "se.conv_expand": "_se_expand",
    "conv_pw": "_project_conv",
    "bn2": "_bn2",
}
# One FiLM generator network (LITE's DenseBlock) -> litemeta's Sequential.
_LITE_GENERATOR_NETWORK = {"0": "linear1", "1": "layernorm", "3": "linear2"}

# What LITE's checkpoint holds besides the learner: an empty classifier layer that
# ``from_pretrained(num_classes=0)`` leaves in the EfficientNet, never called.
_LITE_UNUSED = {
    "feature_extractor._fc.weight": "EfficientNet-PyTorch's classifier with 0 classes (empty)",
    "feature_extractor._fc.bias": "EfficientNet-PyTorch's classifier with 0 classes (empty)",
}
# ORBIT's classifier keeps the last task's statistics as parameters until it is reset.
_ORBIT_TASK_STATE = (
    "classifier.weight",
    "classifier.bias",
    "classifier.means",
    "classifier.precisions",
    "classifier.task_mean",
    "classifier.task_precision",
)

_SHOWN_KEYS = 8


class ConversionError(ValueError):
    """A source checkpoint that cannot become a litemeta learner, with the reason."""


@dataclass
class Conversion:
    """A converted learner, how many tensors were mapped, and the source tensors dropped
    (key -> why it has no counterpart)."""

    learner: BackboneLearner
    mapped: int
    ignored: dict[str, str] = field(default_factory=dict)


def _keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def _by_module(target_keys: Iterable[str], modules: Mapping[str, str]) -> dict[str, str]:
    """Target key -> source key for the targets whose module ``modules`` renames (the
    tensor's own name, ``weight``, ``running_mean``..., is kept)."""
    mapping = {}
    for key in target_keys:
        module, _, leaf = key.rpartition(".")
        if module in modules:
            mapping[key] = f"{modules[module]}.{leaf}"
    return mapping


def _lite_efficientnet_modules(model: nn.Module, target: str, source: str) -> dict[str, str]:
    """timm ``tf_efficientnet_b0`` module -> LITE's EfficientNet module, both prefixed."""
    modules = {f"{target}{t}": f"{source}{s}" for t, s in _LITE_STEM_AND_HEAD.items()}
    blocks = [
        (f"blocks.{stage}.{index}", block)
        for stage, blocks_of_stage in enumerate(getattr(model, "blocks", []))
        for index, block in enumerate(blocks_of_stage)
    ]
    for position, (name, block) in enumerate(blocks):
        table = _LITE_EXPANDED_BLOCK if hasattr(block, "conv_pwl") else _LITE_DEPTHWISE_BLOCK
        for t, s in table.items():
            modules[f"{target}{name}.{t}"] = f"{source}_blocks.{position}.{s}"
    return modules


def _lite_set_encoder_modules(encoder: nn.Module, target: str) -> dict[str, str]:
    """litemeta's set encoder: its i-th convolution and i-th norm are LITE's
    ``layer{i+1}.0`` and ``layer{i+1}.1`` (``set_encoder.py``, ``SimplePrePoolNet``)."""
    convolutions = [n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)]
    norms = [n for n, m in encoder.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise ConversionError(
            "LITE's set encoder normalises with BatchNorm2d and its stored running statistics: "
            "the litemeta learner to convert into must be built with a batch-norm set encoder"
        )
    source = "set_encoder.pre_pooling_fn.layer{}.{}"
    modules = {f"{target}{n}": source.format(i + 1, 0) for i, n in enumerate(convolutions)}
    modules |= {f"{target}{n}": source.format(i + 1, 1) for i, n in enumerate(norms)}
    return modules


def _lite_generator_keys(layers: int) -> dict[str, str]:
    """litemeta's FiLM generator -> LITE's ``FilmAdapter`` of ``FilmLayerGenerator`` (one
    per FiLM layer, each with one block: ``features.py``)."""
    mapping = {}
    for layer in range(layers):
        source = f"feature_adaptation_network.layers.{layer}"
        for kind in ("gamma", "beta"):
            mapping[f"film_generator.{kind}_regularizers.{layer}"] = (
                f"{source}.{kind}_regularizers.0"
            )
            for t, s in _LITE_GENERATOR_NETWORK.items():
                for leaf in ("weight", "bias"):
                    mapping[f"film_generator.{kind}_generators.{layer}.{t}.{leaf}"] = (
                        f"{source}.{kind}_generators.0.{s}.{leaf}"
                    )
    return mapping


def _lite(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int
) -> tuple[BackboneLearner, dict[str, str], dict[str, str]]:
    if learner != "simple_cnaps":
        raise ConversionError(
            f"a LITE checkpoint is Simple CNAPs (its model.py: set encoder, FiLM generator, "
            f"Mahalanobis classifier); it cannot become '{learner}': use --learner simple_cnaps"
        )
    if backbone != LITE_BACKBONE:
        raise ConversionError(
            f"LITE's feature extractor is EfficientNet-B0 in TensorFlow's form, litemeta's "
            f"'{LITE_BACKBONE}'; it cannot become '{backbone}'"
        )
    model = build_learner(
        "simple_cnaps",
        backbone,
        image_size,
        pretrained=False,
        film_placement="published",
        encoder_image_size="backbone",
        encoder_norm="frozen_batch",
        single_example_covariance="feature_variance",
    )
    targets = list(model.state_dict())
    modules = _lite_efficientnet_modules(
        model.backbone.model, "backbone.model.", "feature_extractor."
    )
    modules |= _lite_set_encoder_modules(model.set_encoder, "set_encoder.")
    mapping = _by_module(targets, modules)
    mapping |= _lite_generator_keys(len(model.backbone.film_layers))
    ignored = {
        key: why for key, why in _LITE_UNUSED.items() if key in state and state[key].numel() == 0
    }
    _check_film_layer_count(
        state, "feature_adaptation_network.layers.", len(model.backbone.film_layers), "LITE"
    )
    return model, mapping, ignored


def _check_film_layer_count(
    state: Mapping[str, Tensor], prefix: str, expected: int, source: str
) -> None:
    layers = {key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)}
    if layers and len(layers) != expected:
        raise ConversionError(
            f"the {source} checkpoint generates FiLM parameters for {len(layers)} layers, the "
            f"litemeta backbone has {expected} FiLM layers: it was made for another "
            "architecture than EfficientNet-B0 with FiLM at the stem, every depthwise norm and "
            "the head"
        )


def _orbit(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int
) -> tuple[BackboneLearner, dict[str, str], dict[str, str]]:
    if any(key.startswith(("film_generator.", "set_encoder.")) for key in state):
        raise ConversionError(
            "this ORBIT checkpoint generates FiLM parameters (--adapt_features: ORBIT's CNAPs "
            f"or Simple CNAPs), which litemeta cannot reproduce: {ORBIT_FILM_DIFFERENCES}"
        )
    if any(key.startswith("classifier.weight_processor.") for key in state):
        raise ConversionError(
            "this ORBIT checkpoint is a CNAPs head (--classifier versa) on a meta-trained "
            "extractor without FiLM; litemeta's CNAPs always adapts the backbone with FiLM"
        )
    if learner != "protonets":
        raise ConversionError(
            f"an ORBIT checkpoint without FiLM converts to ProtoNets (--classifier proto, "
            f"meta-trained extractor), not '{learner}': use --learner protonets"
        )
    model = build_learner(
        "protonets", backbone, image_size, pretrained=False, meta_train="backbone"
    )
    mapping = {
        key: "feature_extractor." + key[len("backbone.model.") :]
        for key in model.state_dict()
        if key.startswith("backbone.model.")
    }
    ignored = {
        key: "the classifier's statistics of the last task (litemeta computes them per task)"
        for key in _ORBIT_TASK_STATE
        if key in state
    }
    return model, mapping, ignored


_BUILDERS: dict[str, Callable[..., tuple[BackboneLearner, dict[str, str], dict[str, str]]]] = {
    "lite": _lite,
    "orbit": _orbit,
}
_DEFAULT_LEARNER = {"lite": "simple_cnaps", "orbit": "protonets"}
_DEFAULT_BACKBONE = {"lite": LITE_BACKBONE, "orbit": ORBIT_BACKBONE}


def convert_state_dict(
    source: str,
    state: Mapping[str, Tensor],
    *,
    learner: str | None = None,
    backbone: str | None = None,
    image_size: int = 224,
) -> Conversion:
    """The litemeta learner holding ``state``, a state dict of the ``source`` reference code.

    ``learner`` and ``backbone`` default to what the source's published checkpoints are
    (LITE: ``simple_cnaps`` on :data:`LITE_BACKBONE`; ORBIT: ``protonets`` on
    :data:`ORBIT_BACKBONE`, where another timm backbone with the same tensor names, e.g.
    ``timm:vit_base_patch32_224``, also fits). Raises :class:`ConversionError` naming the
    keys that are missing, left over or of another shape.
    """
    if source not in SOURCES:
        raise ConversionError(f"unknown source '{source}': choose one of {', '.join(SOURCES)}")
    learner = learner or _DEFAULT_LEARNER[source]
    backbone = backbone or _DEFAULT_BACKBONE[source]
    model, mapping, ignored = _BUILDERS[source](state, learner, backbone, image_size)
    target = model.state_dict()
    _check_mapping(source, state, target, mapping, ignored)
    model.load_state_dict({key: state[mapping[key]] for key in target}, strict=True)
    return Conversion(model.eval(), mapped=len(mapping), ignored=ignored)


def _check_mapping(
    source: str,
    state: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    mapping: Mapping[str, str],
    ignored: Mapping[str, str],
) -> None:
    mapping = {key: value for key, value in mapping.items() if key in target}
    unfilled = [key for key in target if key not in mapping or mapping[key] not in state]
    if unfilled:
        wanted = sorted(mapping.get(key, f"(no source for {key})") for key in unfilled)
        raise ConversionError(
            f"the {source} checkpoint lacks {len(unfilled)} tensors the learner needs: "
            f"{_keys(wanted)}; is it a {source} checkpoint of this learner and backbone?"
        )
    used = set(mapping.values())
    left_over = [key for key in state if key not in used and key not in ignored]
    if left_over:
        raise ConversionError(
            f"the {source} checkpoint holds {len(left_over)} tensors with no counterpart in "
            f"the litemeta learner: {_keys(left_over)}; it was made by another model than the "
            "one this conversion maps"
        )
    mismatched = [
        f"{mapping[key]} {tuple(state[mapping[key]].shape)} -> {key} {tuple(value.shape)}"
        for key, value in target.items()
        if tuple(state[mapping[key]].shape) != tuple(value.shape)
    ]
    if mismatched:
        raise ConversionError(
            f"{len(mismatched)} tensors of the {source} checkpoint have another shape than the "
            f"learner's: {_keys(mismatched)}"
        )


def read_source_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a reference checkpoint file: a plain state dict (the published
    files) or a training checkpoint's ``model_state_dict``. Loaded with
    ``weights_only=True``, so no code from the file runs."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, Mapping) and "model_state_dict" in loaded:
        loaded = loaded["model_state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, Tensor) for value in loaded.values()
    ):
        raise ConversionError(
            f"{path} holds no state dict (a mapping of names to tensors): pass the .pt/.pth "
            "file the reference code saved with torch.save(model.state_dict())"
        )
    return dict(loaded)


def convert_checkpoint(
    source: str,
    path: str | Path,
    output: str | Path,
    *,
    learner: str | None = None,
    backbone: str | None = None,
    image_size: int = 224,
) -> Conversion:
    """Convert the reference checkpoint at ``path`` (:func:`convert_state_dict`) and save the
    learner to ``output`` (:func:`~litemeta.learners.save_learner`), which ``litemeta
    evaluate --checkpoint``, ``personalise`` and :func:`~litemeta.learners.load_learner` read."""
    conversion = convert_state_dict(
        source,
        read_source_state_dict(path),
        learner=learner,
        backbone=backbone,
        image_size=image_size,
    )
    save_learner(conversion.learner, output)
    return conversion


def model_overrides(learner: BackboneLearner) -> list[str]:
    """The ``model.*`` settings (``key=value`` overrides of an experiment config) that
    describe ``learner``, so that ``litemeta evaluate --checkpoint FILE`` builds the same
    learner to load a converted file into."""
    config = learner.config()
    backbone = config["backbone"]
    settings = {
        "model.learner": config["learner"],
        "model.backbone": backbone["name"],
        "model.image_size": backbone["image_size"],
        "model.film_placement": backbone["film_placement"],
        "model.pretrained": False,
    }
    settings |= {f"model.options.{key}": value for key, value in config["options"].items()}
    return [
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in settings.items()
    ]
