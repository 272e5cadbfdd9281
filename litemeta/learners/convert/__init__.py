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
  ORBIT's form of FiLM rewritten as litemeta's (:mod:`litemeta.learners.convert.orbit`).

The mapping tables of :mod:`~litemeta.learners.convert.lite` and
:mod:`~litemeta.learners.convert.orbit` name every tensor of the learner and the source
tensor it comes from; every tensor is shape-checked; a source tensor nothing maps, or a
learner tensor no source tensor fills, refuses the conversion naming the keys
(:class:`ConversionError`). The only source tensors dropped are listed with their reason in
:attr:`Conversion.ignored`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.convert.lite import LITE_BACKBONE, lite_plan
from litemeta.learners.convert.orbit import ORBIT_BACKBONE, orbit_plan
from litemeta.learners.convert.plan import (
    LITE_TEST_CHUNK_SIZE,
    Conversion,
    ConversionError,
    Plan,
    shown_keys,
)
from litemeta.learners.factory import save_learner
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

#: How each source's test code runs its set encoder: LITE's model stays in train mode
#: (batch statistics), ORBIT's is put in eval mode (stored statistics).
_TEST_ENCODER_NORM = {"lite": "batch", "orbit": "frozen_batch"}

_BUILDERS: dict[str, Callable[[Mapping[str, Tensor], str, str, int, str], Plan]] = {
    "lite": lite_plan,
    "orbit": orbit_plan,
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
    plan: Plan,
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
            f"{shown_keys(wanted)}; is it a {source} checkpoint of this learner and backbone?"
        )
    used = set(mapping.values())
    left_over = [key for key in state if key not in used and key not in plan.ignored]
    if left_over:
        raise ConversionError(
            f"the {source} checkpoint holds {len(left_over)} tensors with no counterpart in "
            f"the litemeta learner: {shown_keys(left_over)}; it was made by another model than the "
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
            f"learner's: {shown_keys(mismatched)}"
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
