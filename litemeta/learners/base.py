"""The two verbs every few-shot learner offers: adapt to a support set, classify queries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from litemeta.learners.cost import AdaptationCost, measure_adaptation_cost
from litemeta.lite import LitePass


class TaskClassifier(ABC):
    """A classifier specialised to one task's support set, returned by ``adapt``."""

    #: Extra loss to add once per task during meta-training (e.g. CNAPs' FiLM regulariser).
    regularizer: Tensor

    def __init__(self) -> None:
        self.regularizer = torch.zeros(())

    @abstractmethod
    def __call__(self, query_images: Tensor, clips: Tensor | None = None) -> Tensor:
        """Logits ``[n_query, way]`` for query images (uint8 or float, like the support), or
        ``[n_clips, way]`` for ``clips`` of them (indices ``[n_clips, clip_length]``, see
        :class:`~litemeta.tasks.Task`)."""

    def task_parameters(self) -> dict[str, Tensor]:
        """The task-specific numbers this classifier holds (for the cost report); none here."""
        return {}


class FewShotLearner(nn.Module, ABC):
    """A meta-learner: ``adapt`` builds a task classifier from a support set in one pass.

    During meta-training ``adapt`` is called with ``lite`` set, so the support set goes
    through :func:`litemeta.lite.lite_map`; at test time ``lite`` is ``None``. With
    ``support_clips`` (indices ``[n_clips, clip_length]`` into the support images, see
    :class:`~litemeta.tasks.Task`) the classifier is built from clip features, each the mean
    of its images' features.
    """

    #: False for learners with nothing to meta-train (the fine-tuning baseline).
    meta_trainable: bool = True

    #: Keys (dotted) that descriptions saved by earlier versions hold but that no longer
    #: describe the model: a checkpoint holding them still loads.
    withdrawn_settings: ClassVar[frozenset[str]] = frozenset()

    def meta_training_error(self) -> str | None:
        """Why this learner, as built, cannot be meta-trained (said before any training
        step), or ``None``."""
        return None

    @abstractmethod
    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LitePass | None = None,
        support_clips: Tensor | None = None,
    ) -> TaskClassifier:
        """Return a classifier for the task that ``support_images`` / ``support_labels`` define."""

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; learners override to give a pretrained part a lower rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": base_lr}]

    def adaptation_cost(self, support_images: Tensor, support_labels: Tensor) -> AdaptationCost:
        """Time, FLOPs and per-task parameters of adapting to this support set (no LITE)."""
        return measure_adaptation_cost(
            lambda: self.adapt(support_images, support_labels), support_images.shape[0]
        )
