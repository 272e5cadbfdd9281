"""Build learners by name, describe them as JSON, save and load them as plain state dicts."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from litemeta.backbones import DEFAULT_BACKBONE, create_backbone
from litemeta.config import ConfigError
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.cnaps import CNAPs
from litemeta.learners.finetuner import FineTuner
from litemeta.learners.protonets import ProtoNets
from litemeta.learners.simple_cnaps import SimpleCNAPs

__all__ = [
    "LEARNERS",
    "build_learner",
    "learner_from_config",
    "learner_options",
    "load_learner",
    "save_learner",
]

LEARNERS: dict[str, type[BackboneLearner]] = {
    learner.name: learner for learner in (ProtoNets, CNAPs, SimpleCNAPs, FineTuner)
}


def learner_options(name: str) -> list[str]:
    """The keyword options that learner ``name``'s constructor takes besides the backbone
    (following ``**kwargs`` up to the base classes that take them)."""
    found: list[str] = []
    for cls in LEARNERS[name].__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(vars(cls)["__init__"]).parameters.values()
        found += [
            p.name
            for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in found
        ]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return found


def _check_options(name: str, options: dict[str, Any]) -> None:
    known = learner_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"learner '{name}' has no option {', '.join(repr(u) for u in unknown)} "
            f"(its options: {', '.join(known)}); fix or remove it in model.options"
        )


def build_learner(
    name: str,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
    **options: Any,
) -> BackboneLearner:
    """A learner by name (one of :data:`LEARNERS`) on a backbone by name.

    ``backbone``, ``image_size``, ``pretrained`` and ``weights_file`` go to
    :func:`litemeta.backbones.create_backbone`; ``options`` to the learner's constructor.
    """
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner '{name}': choose one of {sorted(LEARNERS)}")
    _check_options(name, options)
    return LEARNERS[name](
        create_backbone(
            backbone, image_size=image_size, pretrained=pretrained, weights_file=weights_file
        ),
        **options,
    )


def learner_from_config(config: dict[str, Any]) -> BackboneLearner:
    """Rebuild the architecture that ``learner.config()`` describes, with fresh weights
    (no pretrained weights are loaded: load a state dict next)."""
    return build_learner(
        config["learner"],
        config["backbone"]["name"],
        config["backbone"]["image_size"],
        pretrained=False,
        **config["options"],
    )


def save_learner(learner: BackboneLearner, path: str | Path) -> None:
    """Write ``{"config": ..., "state_dict": ...}``, loadable with ``weights_only=True``."""
    torch.save({"config": learner.config(), "state_dict": learner.state_dict()}, path)


def load_learner(path: str | Path, map_location: str | torch.device = "cpu") -> BackboneLearner:
    """Load a learner written by :func:`save_learner` (tensors and JSON only, no pickled code)."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    learner = learner_from_config(checkpoint["config"])
    learner.load_state_dict(checkpoint["state_dict"])
    return learner
