"""What a conversion builds: the learner, its tensor mapping and the shared mapping helpers
(:mod:`litemeta.learners.convert`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from litemeta.learners.backbone_learner import BackboneLearner

__all__ = [
    "LITE_TEST_CHUNK_SIZE",
    "Conversion",
    "ConversionError",
    "Plan",
    "by_module",
    "check_film_layer_count",
    "encoder_options",
    "set_encoder_modules",
    "shown_keys",
]

#: LITE's test-time batch of support images (``run.py``, ``--batch_size`` 40): the set
#: encoder's batch statistics are each batch's.
LITE_TEST_CHUNK_SIZE = 40
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
class Plan:
    """How a source state dict becomes ``learner``: learner key -> source key, the learner
    tensors set to constants, source keys dropped with their reason, and a transform of the
    loaded learner that keeps what it computes (ORBIT's FiLM, see
    :func:`litemeta.learners.convert.orbit.orbit_film_plan`)."""

    learner: BackboneLearner
    mapping: dict[str, str]
    ignored: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Tensor] = field(default_factory=dict)
    transform: Callable[[BackboneLearner], None] | None = None


def shown_keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def by_module(target_keys: Iterable[str], modules: Mapping[str, str]) -> dict[str, str]:
    """Target key -> source key for the targets whose module ``modules`` renames (the
    tensor's own name, ``weight``, ``running_mean``..., is kept)."""
    mapping = {}
    for key in target_keys:
        module, _, leaf = key.rpartition(".")
        if module in modules:
            mapping[key] = f"{modules[module]}.{leaf}"
    return mapping


def set_encoder_modules(encoder: nn.Module, target: str, source: str) -> dict[str, str]:
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


def encoder_options(encoder_norm: str) -> dict[str, Any]:
    """The set encoder's options: LITE's test-time batches for batch statistics."""
    if encoder_norm == "batch":
        return {"encoder_norm": "batch", "encoder_batch_size": LITE_TEST_CHUNK_SIZE}
    return {"encoder_norm": encoder_norm}


def check_film_layer_count(
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
