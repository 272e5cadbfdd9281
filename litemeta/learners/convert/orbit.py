"""ORBIT's checkpoints (microsoft/ORBIT-Dataset, ``model/few_shot_recognisers.py``;
Massiceti et al., ICCV 2021) as litemeta's ProtoNets, CNAPs and Simple CNAPs: the tensor
mapping, and ORBIT's form of FiLM rewritten as litemeta's."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.convert.plan import (
    ConversionError,
    Plan,
    by_module,
    encoder_options,
    set_encoder_modules,
)
from litemeta.learners.factory import build_learner

__all__ = ["ORBIT_BACKBONE", "orbit_film_plan", "orbit_plan"]

#: ORBIT's EfficientNet-B0 is timm's ``tf_efficientnet_b0`` with ImageNet normalisation
#: (``data/datasets.py``, ``frame_norm_method='imagenet'``): timm's own settings.
ORBIT_BACKBONE = "timm:tf_efficientnet_b0"

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


def orbit_plan(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> Plan:
    """The plan for an ORBIT state dict: with generated FiLM :func:`orbit_film_plan`, else
    ProtoNets on a meta-trained extractor."""
    if any(key.startswith("film_generator.") for key in state):
        return orbit_film_plan(state, learner, backbone, image_size, encoder_norm)
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
    return Plan(model, _orbit_extractor_keys(model), _orbit_task_state(state))


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


def orbit_film_plan(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> Plan:
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
    model = _orbit_film_learner(state, learner, backbone, image_size, encoder_norm)
    norms = _orbit_film_norms(model.backbone.model)
    if not norms:
        raise ConversionError(
            f"ORBIT's FiLM is defined here for EfficientNets (its model/film.py); the backbone "
            f"'{backbone}' has no layers it would modulate"
        )
    mapping = _orbit_extractor_keys(model)
    mapping |= by_module(
        model.state_dict(),
        set_encoder_modules(model.set_encoder, "set_encoder.", "set_encoder.encoder."),
    )
    generators, constants, folded = _orbit_generator_keys(model, norms)
    mapping |= generators
    if learner == "cnaps":
        mapping |= _orbit_cnaps_head_keys()
    return Plan(model, mapping, _orbit_task_state(state), constants, _norm_bias_mover(folded))


def _orbit_film_learner(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> BackboneLearner:
    """The litemeta learner an ORBIT checkpoint with generated FiLM becomes; refuses a
    ``learner`` that does not match its head."""
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
    return build_learner(
        learner,
        backbone,
        image_size,
        pretrained=False,
        film_placement="published",
        encoder_image_size="backbone",
        encoder_input_norm="backbone",
        **options,
        **encoder_options(encoder_norm),
    )


def _orbit_generator_keys(
    model: BackboneLearner, norms: list[str]
) -> tuple[dict[str, str], dict[str, Tensor], list[tuple[int, str]]]:
    """litemeta's FiLM generator -> ORBIT's generators and regularisers of the modulated
    ``norms`` (in ORBIT's sorted order); the constants of the identity for the FiLM layers
    ORBIT leaves alone; the (layer, norm) pairs whose norm bias moves into beta."""
    order = sorted(f"{norm}.{leaf}" for norm in norms for leaf in ("weight", "bias"))
    index = {name: position for position, name in enumerate(order)}
    target = model.state_dict()
    mapping: dict[str, str] = {}
    constants: dict[str, Tensor] = {}
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
    return mapping, constants, folded


def _orbit_cnaps_head_keys() -> dict[str, str]:
    """litemeta's CNAPs head networks -> ORBIT's ``weight_processor`` and ``bias_processor``."""
    mapping = {}
    networks = (("weight_network", "weight_processor"), ("bias_network", "bias_processor"))
    for ours, theirs in networks:
        for t, s in (("0", "linear1"), ("2", "linear2"), ("4", "linear3")):
            for tensor in ("weight", "bias"):
                mapping[f"classifier_adaptation.{ours}.layers.{t}.{tensor}"] = (
                    f"classifier.{theirs}.{s}.{tensor}"
                )
    return mapping


def _norm_bias_mover(folded: list[tuple[int, str]]) -> Callable[[BackboneLearner], None]:
    """The transform that moves each ``folded`` norm's bias into its beta generator's last
    bias (see :func:`orbit_film_plan`)."""

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

    return move_norm_biases
