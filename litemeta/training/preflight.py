"""The checks a meta-training run passes before any work or any write, and the earlier
checkpoints of its output directory."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from litemeta.checkpoint import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    TrainingState,
    read_training_checkpoint,
)
from litemeta.config import ConfigError
from litemeta.learners.base import FewShotLearner
from litemeta.training.settings import TrainingConfig

__all__ = [
    "check_training_run",
    "earlier_checkpoints",
    "read_resumable_checkpoint",
    "resume_point",
]


def check_training_run(
    config: TrainingConfig,
    learner: FewShotLearner,
    model_description: Mapping[str, Any],
    *,
    resume: bool,
) -> None:
    """Refuse a run that cannot train, before any work or any write: invalid settings, a
    learner with nothing to meta-train or that cannot be meta-trained as built, an output
    directory that holds an earlier run (without ``resume``) or no checkpoint this model can
    resume from (with it). ``model_description`` as :func:`~litemeta.checkpoint.describe_model`
    gives it."""
    if not learner.meta_trainable:
        registered = getattr(learner, "name", None)  # the name a config builds it by, if any
        how = (
            f"`litemeta evaluate model.learner={registered}`"
            if registered
            else "litemeta.evaluation.evaluate"
        )
        raise ConfigError(
            f"{type(learner).__name__} has nothing to meta-train (meta_trainable is False): "
            f"evaluate it with {how} instead"
        )
    refusal = learner.meta_training_error()
    if refusal is not None:
        raise ConfigError(refusal)
    config.validate()
    output_dir = Path(config.output_dir)
    if resume:
        read_resumable_checkpoint(
            resume_point(output_dir),
            model_description,
            config.steps,
            withdrawn=learner.withdrawn_settings,
        )
        return
    earlier = [path.name for path in earlier_checkpoints(output_dir)]
    if earlier:
        raise FileExistsError(
            f"{output_dir} already holds a training run ({', '.join(earlier)}): continue it "
            "with --resume (resume=True), or start a new one elsewhere with "
            "training.output_dir=DIR"
        )


def earlier_checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoints an earlier run left in ``output_dir`` (``last.pt``, ``best.pt``): a
    fresh run there would take them for its own."""
    return [
        output_dir / name
        for name in (LAST_CHECKPOINT, BEST_CHECKPOINT)
        if (output_dir / name).exists()
    ]


def resume_point(output_dir: Path) -> Path:
    """The checkpoint a resumed run continues from: ``last.pt``, or, where only ``best.pt``
    is left (``last.pt`` deleted or lost), ``best.pt``, which holds the full training state
    of its step too."""
    last, best = output_dir / LAST_CHECKPOINT, output_dir / BEST_CHECKPOINT
    if not os.path.lexists(last) and best.is_file():
        return best
    return last


def read_resumable_checkpoint(
    path: Path,
    model_description: Mapping[str, Any],
    steps: int,
    map_location: str | torch.device = "cpu",
    withdrawn: Collection[str] = (),
) -> tuple[dict[str, Any], TrainingState]:
    """The weights and training state of the checkpoint at ``path``, to resume a model
    (described by :func:`~litemeta.checkpoint.describe_model`; ``withdrawn``: the model's
    :attr:`~litemeta.learners.base.FewShotLearner.withdrawn_settings`) up to ``steps``;
    refused when it was written for another model or has already gone past ``steps``."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path} to resume from: start the run without --resume (resume "
            "continues a run from its last.pt)"
        )
    weights, state = read_training_checkpoint(path, model_description, map_location, withdrawn)
    if state.step > steps:
        raise ValueError(
            f"{path} is at step {state.step}, beyond training.steps={steps}: raise "
            f"training.steps to train on, or evaluate it with litemeta evaluate --checkpoint "
            f"{path.parent}"
        )
    return weights, state
