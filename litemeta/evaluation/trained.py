"""A meta-trained learner as ``litemeta personalise``, ``litemeta export`` and the web app
use it: rebuilt from its checkpoint alone, described by its run's settings file, and adapted
to a user's support set in one pass with LITE off (the learner's ``adapt`` verb, no
autograd), on the device it runs on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch
import yaml
from torch import Tensor

from litemeta.checkpoint import find_checkpoint
from litemeta.data.support_folder import SupportSet, read_support_folder
from litemeta.device import pick_device, place_on_device
from litemeta.learners import load_learner
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.base import TaskClassifier

__all__ = [
    "EXPERIMENT_FILE",
    "AdaptedCheckpoint",
    "adapt_checkpoint",
    "adapt_in_one_pass",
    "adapt_to_support",
    "load_trained_learner",
    "trained_on",
]

#: The settings of a training run, written to its output folder beside its checkpoints.
EXPERIMENT_FILE = "experiment.yaml"

Adapted = TypeVar("Adapted")
#: Adapts a learner to support images and labels on its device: :func:`adapt_in_one_pass`,
#: or one that computes more from the same pass (the web app's calibration).
Adapter = Callable[[BackboneLearner, Tensor, Tensor], Adapted]


def load_trained_learner(checkpoint: str | Path, chunk_size: int | None = None) -> BackboneLearner:
    """Rebuild a learner from a checkpoint alone (its model description and weights): a
    training checkpoint, a run's output directory (its best, else last, checkpoint) or a file
    of :func:`~litemeta.learners.save_learner`; in eval mode, on the device to use, running
    ``chunk_size`` support images per forward call (see :func:`~litemeta.learners.load_learner`)."""
    device = pick_device()
    learner = load_learner(find_checkpoint(checkpoint), device, chunk_size)
    return place_on_device(learner, device).eval()


def trained_on(checkpoint: Path) -> str | None:
    """The data set the run of ``checkpoint`` (a file in the run's folder, or the folder)
    was meta-trained on, from the run's :data:`EXPERIMENT_FILE`; ``None`` without one."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    try:
        settings = yaml.safe_load((folder / EXPERIMENT_FILE).read_text(encoding="utf-8"))
        return str(settings["data"]["dataset"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def adapt_in_one_pass(learner: BackboneLearner, images: Tensor, labels: Tensor) -> TaskClassifier:
    """The learner's task classifier for a support set, adapted in one forward pass."""
    with torch.no_grad():
        return learner.adapt(images, labels)


def adapt_to_support(
    learner: BackboneLearner, support: SupportSet, adapt: Adapter[Adapted]
) -> Adapted:
    """``adapt`` applied to the learner and the support set moved to the learner's device."""
    device = next(learner.parameters()).device
    return adapt(learner, support.images.to(device), support.labels.to(device))


@dataclass(frozen=True)
class AdaptedCheckpoint(Generic[Adapted]):
    """A checkpoint's learner, the support set it was adapted to, and what ``adapt`` made of
    them (a task classifier, or more)."""

    learner: BackboneLearner
    support: SupportSet
    adapted: Adapted


def adapt_checkpoint(
    checkpoint: str | Path,
    support_folder: str | Path,
    adapt: Adapter[Adapted],
    *,
    skip_unreadable: bool = False,
) -> AdaptedCheckpoint[Adapted]:
    """Load a checkpoint's learner and adapt it with ``adapt`` to the class folders of
    ``support_folder`` (:func:`~litemeta.data.support_folder.read_support_folder`, at the
    learner's image size; ``skip_unreadable`` as there)."""
    learner = load_trained_learner(checkpoint)
    support = read_support_folder(
        Path(support_folder), learner.backbone.image_size, skip_unreadable=skip_unreadable
    )
    return AdaptedCheckpoint(learner, support, adapt_to_support(learner, support, adapt))
