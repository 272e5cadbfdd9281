"""Build learners by name, describe them as JSON, save and load them (in the checkpoint
format of :mod:`litemeta.checkpoint`)."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from litemeta.backbones import DEFAULT_BACKBONE, FilmPlacement, create_backbone
from litemeta.checkpoint import read_model, save_model
from litemeta.config import ConfigError, coerce_value, setting_differences
from litemeta.learners.backbone_learner import BackboneLearner, option_parameters
from litemeta.learners.registry import LEARNERS

__all__ = [
    "LEARNERS",
    "build_learner",
    "checked_options",
    "learner_from_config",
    "learner_options",
    "load_learner",
    "save_learner",
]


def learner_options(name: str) -> list[str]:
    """The keyword options that learner ``name``'s constructor takes besides the backbone
    (following ``**kwargs`` up to the base classes that take them)."""
    return list(option_parameters(LEARNERS[name]))


def _required_options(name: str) -> list[str]:
    return [
        option
        for option, parameter in option_parameters(LEARNERS[name]).items()
        if parameter.default is inspect.Parameter.empty
    ]


def checked_options(
    name: str, options: Mapping[str, Any], where: str = "model.options"
) -> dict[str, Any]:
    """``options`` of learner ``name`` with each value checked against the constructor's
    type (ints to float where it takes a float); an unknown option or ill-typed value
    raises :class:`ConfigError` naming ``where``."""
    learner = LEARNERS[name]
    known = learner_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"learner '{name}' has no option {', '.join(repr(u) for u in unknown)} "
            f"(its options: {', '.join(known)}); fix or remove it in {where}"
        )
    hints: dict[str, Any] = {}
    for klass in reversed(learner.__mro__):
        if "__init__" in vars(klass):
            hints |= typing.get_type_hints(vars(klass)["__init__"])
    return {  # an option without a type hint (a user's learner) is passed as it is
        key: coerce_value(value, hints[key], f"{where}.{key}") if key in hints else value
        for key, value in options.items()
    }


def _check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    options = checked_options(name, options)
    missing = [option for option in _required_options(name) if option not in options]
    if missing:
        raise ConfigError(
            f"learner '{name}' needs option {', '.join(repr(m) for m in missing)} "
            "(it has no default); set it in model.options"
        )
    return options


def build_learner(
    name: str,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
    film_placement: FilmPlacement | None = None,
    chunk_size: int | None = None,
    **options: Any,
) -> BackboneLearner:
    """A learner by name (one of :data:`LEARNERS`) on a backbone by name.

    ``backbone``, ``image_size``, ``pretrained``, ``weights_file`` and ``film_placement``
    go to :func:`litemeta.backbones.create_backbone`; ``options`` to the learner's
    constructor; ``chunk_size`` (``None``: the default) is its run-time
    :attr:`~BackboneLearner.chunk_size`.
    """
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner '{name}': choose one of {sorted(LEARNERS)}")
    options = _check_options(name, options)
    learner = LEARNERS[name](
        create_backbone(
            backbone,
            image_size=image_size,
            pretrained=pretrained,
            weights_file=weights_file,
            film_placement=film_placement,
        ),
        **options,
    )
    if chunk_size is not None:
        learner.chunk_size = chunk_size
    return learner


def learner_from_config(config: dict[str, Any], chunk_size: int | None = None) -> BackboneLearner:
    """Rebuild the architecture that ``learner.config()`` describes, with fresh weights
    (no pretrained weights are loaded: load a state dict next), running ``chunk_size``
    support images per forward call (``None``: the default).

    A description without ``film_placement`` predates the published FiLM placement and
    means FiLM after every normalisation layer. One with ``options.chunk_size`` was written
    when the chunk size was saved as an option: it runs with that chunk size unless
    ``chunk_size`` is given. A description this version cannot rebuild exactly (one written
    for an architecture that has since changed) raises :class:`~litemeta.config.ConfigError`
    naming the settings that differ.
    """
    backbone = config["backbone"]
    options = dict(config["options"])
    saved_chunk_size = options.pop("chunk_size", None)
    # An unknown learner name passes here and build_learner names the known ones.
    if config["learner"] in LEARNERS:
        known = set(learner_options(config["learner"]))
    else:
        known = set(options)
    required = _required_options(config["learner"]) if config["learner"] in LEARNERS else []
    differences = [
        f"options.{key}: saved, no longer an option" for key in sorted(set(options) - known)
    ] + [
        f"options.{key}: not saved, a required option now" for key in required if key not in options
    ]
    learner = None
    if not differences:
        learner = build_learner(
            config["learner"],
            backbone["name"],
            backbone["image_size"],
            pretrained=False,
            film_placement=backbone.get("film_placement", "all"),
            chunk_size=saved_chunk_size if chunk_size is None else chunk_size,
            **options,
        )
        # A training checkpoint's description holds more keys (the model class): compare
        # what a learner describes.
        described = {key: config[key] for key in learner.config()}
        described["backbone"] = {"film_placement": "all", **backbone}
        described["options"] = options
        rebuilt = json.loads(json.dumps(learner.config()))
        differences = [
            f"{key}: {old!r} saved, {new!r} now"
            for key, (old, new) in setting_differences(
                json.loads(json.dumps(described)), rebuilt
            ).items()
        ]
    if learner is None or differences:
        raise ConfigError(
            f"this {config['learner']} was saved by a litemeta whose architecture differs "
            f"from this version's ({'; '.join(differences)}); its weights cannot be loaded "
            "into the current architecture: meta-train it again with this version"
        )
    return learner


def save_learner(learner: BackboneLearner, path: str | Path) -> None:
    """Write the learner's weights and description (``learner.config()``): a training
    checkpoint without the training state (:func:`litemeta.checkpoint.save_model`), written
    atomically with a checksum and loadable with ``weights_only=True``."""
    save_model(path, learner, learner.config())


def load_learner(
    path: str | Path, map_location: str | torch.device = "cpu", chunk_size: int | None = None
) -> BackboneLearner:
    """Rebuild a learner from a file of :func:`save_learner` or a training checkpoint of
    ``litemeta train`` (tensors and JSON only, no pickled code; see
    :func:`litemeta.checkpoint.read_model`), running ``chunk_size`` support images per
    forward call (``None``: the default)."""
    saved = read_model(path, map_location=map_location)
    if "learner" not in saved.config:
        raise ConfigError(
            f"{path} holds no learner description; pass a checkpoint written by `litemeta train`"
        )
    learner = learner_from_config(saved.config, chunk_size)
    learner.load_state_dict(saved.weights)
    return learner
