"""Learners from the published checkpoints of the reference code.

Two sources (:data:`SOURCES`):

- ``"lite"``: the state dict of LITE's ``FewShotClassifier`` (cambridge-mlg/LITE,
  ``src/model.py``; Bronskill et al., NeurIPS 2021), Simple CNAPs on EfficientNet-B0 in
  lukemelas' EfficientNet-PyTorch naming, e.g. ``models/meta-trained_lite_224.pt``. It becomes
  a :class:`~litemeta.learners.SimpleCNAPs` on ``tf_efficientnet_b0`` (timm's port of the
  same network) with the published FiLM placement and a batch-norm set encoder that
  normalises each batch of 40 support images with its own statistics, as LITE's test code
  (``encoder_norm="batch"``, ``encoder_batch_size`` 40; ``encoder_norm="frozen_batch"``, the stored
  statistics, to meta-train it further).
- ``"orbit"``: the state dict of ORBIT's ``SingleStepFewShotRecogniser``
  (microsoft/ORBIT-Dataset, ``model/few_shot_recognisers.py``, the timm-based code that made
  the checkpoints its README lists) on timm's ``tf_efficientnet_b0``. ProtoNets
  (``--classifier proto``, a meta-trained extractor, no FiLM) becomes a
  :class:`~litemeta.learners.ProtoNets`; CNAPs (``versa``) and Simple CNAPs
  (``mahalanobis``) with generated FiLM (``--adapt_features``, a frozen extractor) become
  :class:`~litemeta.learners.CNAPs` and :class:`~litemeta.learners.SimpleCNAPs`, with
  ORBIT's form of FiLM rewritten as litemeta's (:func:`_orbit_film`).

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
from typing import Any

import torch
from torch import Tensor, nn

from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.factory import build_learner, save_learner
from litemeta.learners.task_adaptation import ENCODER_NORMS

__all__ = [
    "LITE_BACKBONE",
    "LITE_TEST_CHUNK_SIZE",
    "ORBIT_BACKBONE",
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

#: LITE's test-time batch of support images (``run.py``, ``--batch_size`` 40): the set
#: encoder's batch statistics are each batch's.
LITE_TEST_CHUNK_SIZE = 40
#: How each source's test code runs its set encoder: LITE's model stays in train mode
#: (batch statistics), ORBIT's is put in eval mode (stored statistics).
_TEST_ENCODER_NORM = {"lite": "batch", "orbit": "frozen_batch"}

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

#: ORBIT's ``tag_film_layers``: timm EfficientNet block classes -> the norm it modulates.
_ORBIT_TAGGED_BLOCKS = {
    "InvertedResidual": "bn2",
    "CondConvResidual": "bn2",
    "EdgeResidual": "bn1",
    "ConvBnAct": "bn1",
}

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


@dataclass
class _Plan:
    """How a source state dict becomes ``learner``: learner key -> source key, the learner
    tensors set to constants, source keys dropped with their reason, and a transform of the
    loaded learner that keeps what it computes (ORBIT's FiLM, see :func:`_orbit_film`)."""

    learner: BackboneLearner
    mapping: dict[str, str]
    ignored: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Tensor] = field(default_factory=dict)
    transform: Callable[[BackboneLearner], None] | None = None


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


def _set_encoder_modules(encoder: nn.Module, target: str, source: str) -> dict[str, str]:
    """litemeta's set encoder: its i-th convolution and i-th norm are the reference's
    ``{source}layer{i+1}.0`` and ``.1`` (LITE's ``set_encoder.py`` and ORBIT's
    ``set_encoders.py``, ``SimplePrePoolNet``)."""
    convolutions = [n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)]
    norms = [n for n, m in encoder.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise ConversionError(
            "the reference set encoder normalises with BatchNorm2d and its stored statistics: "
            "the litemeta learner to convert into must be built with a batch-norm set encoder"
        )
    modules = {f"{target}{n}": f"{source}layer{i + 1}.0" for i, n in enumerate(convolutions)}
    modules |= {f"{target}{n}": f"{source}layer{i + 1}.1" for i, n in enumerate(norms)}
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


def _encoder_options(encoder_norm: str) -> dict[str, Any]:
    """The set encoder's options: LITE's test-time batches for batch statistics."""
    if encoder_norm == "batch":
        return {"encoder_norm": "batch", "encoder_batch_size": LITE_TEST_CHUNK_SIZE}
    return {"encoder_norm": encoder_norm}


def _lite(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> _Plan:
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
        single_example_covariance="feature_variance",
        **_encoder_options(encoder_norm),
    )
    targets = list(model.state_dict())
    modules = _lite_efficientnet_modules(
        model.backbone.model, "backbone.model.", "feature_extractor."
    )
    modules |= _set_encoder_modules(
        model.set_encoder, "set_encoder.", "set_encoder.pre_pooling_fn."
    )
    mapping = _by_module(targets, modules)
    mapping |= _lite_generator_keys(len(model.backbone.film_layers))
    ignored = {
        key: why for key, why in _LITE_UNUSED.items() if key in state and state[key].numel() == 0
    }
    _check_film_layer_count(
        state, "feature_adaptation_network.layers.", len(model.backbone.film_layers), "LITE"
    )
    return _Plan(model, mapping, ignored)


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
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> _Plan:
    if any(key.startswith("film_generator.") for key in state):
        return _orbit_film(state, learner, backbone, image_size, encoder_norm)
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
    return _Plan(model, _orbit_extractor_keys(model), _orbit_task_state(state))


def _orbit_extractor_keys(model: BackboneLearner) -> dict[str, str]:
    """ORBIT's ``feature_extractor`` is the timm model itself: the same names."""
    prefix = "backbone.model."
    return {
        key: "feature_extractor." + key[len(prefix) :]
        for key in model.state_dict()
        if key.startswith(prefix)
    }


def _orbit_task_state(state: Mapping[str, Tensor]) -> dict[str, str]:
    return {
        key: "the classifier's statistics of the last task (litemeta computes them per task)"
        for key in _ORBIT_TASK_STATE
        if key in state
    }


def _orbit_film_norms(model: nn.Module) -> list[str]:
    """The batch norms ORBIT's ``tag_film_layers`` marks in a timm EfficientNet
    (``model/film.py``): the root's ``bn1`` and ``bn2``, ``bn2`` of each block whose class
    is in :data:`_ORBIT_TAGGED_BLOCKS`'s list; other blocks (B0's first, a depthwise-separable
    block) are not modulated."""
    names = []
    for name, module in model.named_modules():
        norm = _ORBIT_TAGGED_BLOCKS.get(type(module).__name__)
        if name == "":
            norm = None
            names += [
                n for n in ("bn1", "bn2") if isinstance(getattr(module, n, None), nn.BatchNorm2d)
            ]
        if norm is not None and isinstance(getattr(module, norm, None), nn.BatchNorm2d):
            names.append(f"{name}.{norm}")
    return names


def _orbit_film(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> _Plan:
    """ORBIT's CNAPs (``--classifier versa``) or Simple CNAPs (``mahalanobis``) with generated
    FiLM (``--adapt_features``, a frozen extractor) as litemeta's, computing the same:

    - ORBIT sorts the names of the modulated norms' ``weight`` and ``bias`` and gives each its
      generator network and regulariser (``feature_adapters.py``): a ``weight``'s become the
      layer's gamma generator, a ``bias``'s its beta generator.
    - ORBIT's FiLM sets the norm's parameters to ``w * gamma`` and ``b + beta``
      (``gamma w x_hat + b + beta``), litemeta's modulates the norm's output
      (``gamma (w x_hat + b) + beta``). The same function: the norm's bias ``b`` moves into
      the beta generator's last bias as ``b / r_beta`` (so ``r_beta * b(z)`` gains ``b``) and
      the norm's bias becomes 0. A channel with ``r_beta = 0`` and ``b != 0`` cannot move and
      is refused.
    - A FiLM layer ORBIT does not modulate (EfficientNet-B0's first block) gets a generator
      of zeros and regularisers of zeros: gamma = 1, beta = 0, the plain layer.
    - ORBIT's set encoder sees the frames as its backbone does (ImageNet's mean and std):
      ``encoder_input_norm="backbone"``; it runs in eval mode: ``encoder_norm="frozen_batch"``
      (unless another is asked for).
    """
    if learner not in ("simple_cnaps", "cnaps"):
        raise ConversionError(
            f"an ORBIT checkpoint with generated FiLM is CNAPs (--classifier versa) or Simple "
            f"CNAPs (--classifier mahalanobis), not '{learner}': use --learner cnaps or "
            "simple_cnaps"
        )
    head = any(key.startswith("classifier.weight_processor.") for key in state)
    if head != (learner == "cnaps"):
        kind = "has" if head else "has no"
        raise ConversionError(
            f"this ORBIT checkpoint {kind} a CNAPs classifier head (classifier.weight_processor): "
            f"use --learner {'cnaps' if head else 'simple_cnaps'}"
        )
    options = {"single_example_covariance": "feature_variance"} if learner == "simple_cnaps" else {}
    model = build_learner(
        learner,
        backbone,
        image_size,
        pretrained=False,
        film_placement="published",
        encoder_image_size="backbone",
        encoder_input_norm="backbone",
        **options,
        **_encoder_options(encoder_norm),
    )
    norms = _orbit_film_norms(model.backbone.model)
    if not norms:
        raise ConversionError(
            f"ORBIT's FiLM is defined here for EfficientNets (its model/film.py); the backbone "
            f"'{backbone}' has no layers it would modulate"
        )
    order = sorted(f"{norm}.{leaf}" for norm in norms for leaf in ("weight", "bias"))
    index = {name: position for position, name in enumerate(order)}
    mapping = _orbit_extractor_keys(model)
    mapping |= _by_module(
        model.state_dict(),
        _set_encoder_modules(model.set_encoder, "set_encoder.", "set_encoder.encoder."),
    )
    constants: dict[str, Tensor] = {}
    target = model.state_dict()
    folded = []
    for layer, film_layer in enumerate(model.backbone.film_layers):
        for kind, leaf in (("gamma", "weight"), ("beta", "bias")):
            prefix = f"film_generator.{kind}_generators.{layer}."
            regularizer = f"film_generator.{kind}_regularizers.{layer}"
            position = index.get(f"{film_layer.name}.{leaf}")
            if position is None:  # not modulated by ORBIT: the identity
                for key in [k for k in target if k.startswith(prefix)] + [regularizer]:
                    one = key == f"{prefix}1.weight"  # the LayerNorm's scale
                    constants[key] = (
                        torch.ones_like(target[key]) if one else torch.zeros_like(target[key])
                    )
                continue
            mapping[regularizer] = f"film_generator.regularizers.{position}"
            for t in ("0", "1", "3"):
                for tensor in ("weight", "bias"):
                    mapping[f"{prefix}{t}.{tensor}"] = (
                        f"film_generator.generators.{position}.block.{t}.{tensor}"
                    )
            if kind == "beta":
                folded.append((layer, film_layer.name))
    if learner == "cnaps":
        for ours, theirs in (
            ("weight_network", "weight_processor"),
            ("bias_network", "bias_processor"),
        ):
            for t, s in (("0", "linear1"), ("2", "linear2"), ("4", "linear3")):
                for tensor in ("weight", "bias"):
                    mapping[f"classifier_adaptation.{ours}.layers.{t}.{tensor}"] = (
                        f"classifier.{theirs}.{s}.{tensor}"
                    )

    def move_norm_biases(converted: BackboneLearner) -> None:
        modules = dict(converted.backbone.model.named_modules())
        for layer, name in folded:
            norm = modules[name]
            scale = converted.film_generator.beta_regularizers[layer]
            last = converted.film_generator.beta_generators[layer][3]
            stuck = (scale == 0) & (norm.bias != 0)
            if stuck.any():
                raise ConversionError(
                    f"ORBIT's FiLM regulariser of {name}.bias is 0 where the norm's bias is not "
                    f"(channels {stuck.nonzero().flatten().tolist()[:8]}): its shift cannot "
                    "move into litemeta's beta generator"
                )
            last.bias += torch.where(scale == 0, 0.0, norm.bias / scale)
            norm.bias.zero_()

    return _Plan(model, mapping, _orbit_task_state(state), constants, move_norm_biases)


_BUILDERS: dict[str, Callable[[Mapping[str, Tensor], str, str, int, str], _Plan]] = {
    "lite": _lite,
    "orbit": _orbit,
}


def _default_learner(source: str, state: Mapping[str, Tensor]) -> str:
    """The learner a state dict of ``source`` is, where its tensors say so."""
    if source == "lite":
        return "simple_cnaps"
    if any(key.startswith("classifier.weight_processor.") for key in state):
        return "cnaps"
    return "simple_cnaps" if any(k.startswith("film_generator.") for k in state) else "protonets"


_DEFAULT_BACKBONE = {"lite": LITE_BACKBONE, "orbit": ORBIT_BACKBONE}


def convert_state_dict(
    source: str,
    state: Mapping[str, Tensor],
    *,
    learner: str | None = None,
    backbone: str | None = None,
    image_size: int = 224,
    encoder_norm: str | None = None,
) -> Conversion:
    """The litemeta learner holding ``state``, a state dict of the ``source`` reference code.

    ``learner`` and ``backbone`` default to what the source's published checkpoints are
    (LITE: ``simple_cnaps`` on :data:`LITE_BACKBONE`; ORBIT: on :data:`ORBIT_BACKBONE`,
    ``protonets`` without FiLM, ``cnaps`` with a CNAPs head, else ``simple_cnaps``; for
    ORBIT's ProtoNets another timm backbone with the same tensor names also fits).
    ``encoder_norm`` (learners with a set encoder) defaults to how the source's test code
    runs its set encoder: LITE ``"batch"`` in batches of 40 (its ``run.py``), ORBIT
    ``"frozen_batch"``; ``"frozen_batch"`` gives a LITE learner that can be meta-trained
    further (``"batch"`` cannot be). The learner takes the precision of the source's
    tensors. Raises :class:`ConversionError` naming the keys that are missing, left over or
    of another shape.
    """
    if source not in SOURCES:
        raise ConversionError(f"unknown source '{source}': choose one of {', '.join(SOURCES)}")
    learner = learner or _default_learner(source, state)
    backbone = backbone or _DEFAULT_BACKBONE[source]
    if encoder_norm is not None and encoder_norm not in ENCODER_NORMS:
        raise ConversionError(f"encoder_norm must be one of {ENCODER_NORMS}, got {encoder_norm!r}")
    plan = _BUILDERS[source](
        state, learner, backbone, image_size, encoder_norm or _TEST_ENCODER_NORM[source]
    )
    floating = [value.dtype for value in state.values() if value.is_floating_point()]
    if floating:  # the source's precision, also for the transform (float32 as published)
        plan.learner.to(floating[0])
    target = plan.learner.state_dict()
    mapping = {key: value for key, value in plan.mapping.items() if key in target}
    _check_mapping(source, state, target, mapping, plan)
    plan.learner.load_state_dict(
        {
            key: plan.constants[key] if key in plan.constants else state[mapping[key]]
            for key in target
        },
        strict=True,
    )
    if plan.transform is not None:
        with torch.no_grad():
            plan.transform(plan.learner)
    return Conversion(plan.learner.eval(), mapped=len(mapping), ignored=plan.ignored)


def _check_mapping(
    source: str,
    state: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    mapping: Mapping[str, str],
    plan: _Plan,
) -> None:
    unfilled = [
        key
        for key in target
        if key not in plan.constants and (key not in mapping or mapping[key] not in state)
    ]
    if unfilled:
        wanted = sorted(mapping.get(key, f"(no source for {key})") for key in unfilled)
        raise ConversionError(
            f"the {source} checkpoint lacks {len(unfilled)} tensors the learner needs: "
            f"{_keys(wanted)}; is it a {source} checkpoint of this learner and backbone?"
        )
    used = set(mapping.values())
    left_over = [key for key in state if key not in used and key not in plan.ignored]
    if left_over:
        raise ConversionError(
            f"the {source} checkpoint holds {len(left_over)} tensors with no counterpart in "
            f"the litemeta learner: {_keys(left_over)}; it was made by another model than the "
            "one this conversion maps"
        )
    mismatched = [
        f"{mapping[key]} {tuple(state[mapping[key]].shape)} -> {key} {tuple(value.shape)}"
        for key, value in target.items()
        if key in mapping and tuple(state[mapping[key]].shape) != tuple(value.shape)
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
    encoder_norm: str | None = None,
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
        encoder_norm=encoder_norm,
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
