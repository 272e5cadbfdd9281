"""LITE's Simple CNAPs checkpoints (cambridge-mlg/LITE, ``src/model.py``; Bronskill et al.,
NeurIPS 2021) as litemeta's :class:`~litemeta.learners.SimpleCNAPs`: the tensor mapping."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from litemeta.learners.convert.plan import (
    ConversionError,
    Plan,
    by_module,
    check_film_layer_count,
    encoder_options,
    set_encoder_modules,
)
from litemeta.learners.factory import build_learner

__all__ = ["LITE_BACKBONE", "lite_plan"]

#: The litemeta backbone of LITE's EfficientNet-B0: the TensorFlow port (TF "same" padding,
#: batch-norm epsilon 1e-3) with LITE's input scaling to [-1, 1].
LITE_BACKBONE = "tf_efficientnet_b0"
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


def lite_plan(
    state: Mapping[str, Tensor], learner: str, backbone: str, image_size: int, encoder_norm: str
) -> Plan:
    """The plan for a LITE state dict (only Simple CNAPs on :data:`LITE_BACKBONE`)."""
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
        **encoder_options(encoder_norm),
    )
    targets = list(model.state_dict())
    modules = _lite_efficientnet_modules(
        model.backbone.model, "backbone.model.", "feature_extractor."
    )
    modules |= set_encoder_modules(model.set_encoder, "set_encoder.", "set_encoder.pre_pooling_fn.")
    mapping = by_module(targets, modules)
    mapping |= _lite_generator_keys(len(model.backbone.film_layers))
    ignored = {
        key: why for key, why in _LITE_UNUSED.items() if key in state and state[key].numel() == 0
    }
    check_film_layer_count(
        state, "feature_adaptation_network.layers.", len(model.backbone.film_layers), "LITE"
    )
    return Plan(model, mapping, ignored)
