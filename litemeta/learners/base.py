"""The two verbs every few-shot learner offers: adapt to a support set, classify queries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from litemeta.learners.cost import AdaptationCost, measure_adaptation_cost
from litemeta.lite import LitePass
from litemeta.tasks import pool_clips


class TaskClassifier(ABC):
    """A classifier specialised to one task's support set, returned by ``adapt``.

    It declares the split its callers use, as timm declares ``forward_features`` and
    ``forward_head`` on every model: :meth:`embed` maps each image to its features on its
    own (so LITE can map the support set and a training step can embed LITE's drawn support
    rows with a query batch), :meth:`classify` pools clips and scores features with
    :meth:`logits`, and calling the classifier does both. For serving, :meth:`export_embedding`
    and :meth:`export_head` give the same two steps as self-contained modules that
    ``torch.onnx`` exports (:mod:`litemeta.serve.export`), and :meth:`logits_without` scores
    a support example with the head rebuilt without it (the web app's leave-one-out).
    """

    #: Extra loss to add once per task during meta-training (e.g. CNAPs' FiLM regulariser).
    regularizer: Tensor

    def __init__(self) -> None:
        self.regularizer = torch.zeros(())

    @abstractmethod
    def embed(self, images: Tensor) -> Tensor:
        """Features ``[n, d]`` of images ``[n, c, h, w]`` (uint8 or float, like the support),
        each computed from its image alone."""

    @abstractmethod
    def logits(self, features: Tensor) -> Tensor:
        """Logits ``[n, way]`` for features ``[n, d]`` from :meth:`embed`."""

    def classify(self, features: Tensor, clips: Tensor | None = None) -> Tensor:
        """Logits for features from :meth:`embed`, or for the mean feature of each of
        ``clips`` (indices ``[n_clips, clip_length]`` into them, see
        :class:`~litemeta.tasks.Task`)."""
        return self.logits(pool_clips(features, clips))

    def __call__(self, query_images: Tensor, clips: Tensor | None = None) -> Tensor:
        """Logits ``[n_query, way]`` for query images, or ``[n_clips, way]`` for ``clips`` of
        them: ``classify(embed(query_images), clips)``."""
        return self.classify(self.embed(query_images), clips)

    def export_embedding(self) -> nn.Module:
        """:meth:`embed` as a module of its own (a copy, with this task's parameters as
        buffers or frozen parameters) that ``torch.onnx.export`` traces: uint8 images
        ``[n, 3, S, S]`` -> features ``[n, d]``."""
        raise self._not_exportable()

    def export_head(self) -> nn.Module:
        """:meth:`logits` as a module of its own that ``torch.onnx.export`` traces at opset
        17: float32 features ``[n, d]`` -> logits ``[n, way]``, with this task's tensors as
        float32 buffers (no triangular solves or factorisations: ONNX has none)."""
        raise self._not_exportable()

    def logits_without(self, features: Tensor, labels: Tensor, way: int, row: int) -> Tensor:
        """Logits ``[1, way]`` of support example ``row`` under this classifier's head rebuilt
        from the other support ``features`` ``[n, d]`` (from :meth:`embed`, with ``labels``
        ``[n]``, every class keeping an example): the leave-one-out of the web app's quality
        report and calibration (:mod:`litemeta.serve.quality`)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot rebuild its head without one support example, which "
            "the quality report and calibration need: give it logits_without"
        )

    def task_parameters(self) -> dict[str, Tensor]:
        """The task-specific numbers this classifier holds (for the cost report); none here."""
        return {}

    def _not_exportable(self) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} cannot be exported: give it export_embedding and "
            "export_head (see litemeta.learners.base.TaskClassifier)"
        )


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
