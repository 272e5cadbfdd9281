"""Simple CNAPs (Bateni, Goyal, Masrani, Wood, Sigal, "Improved Few-Shot Visual
Classification", CVPR 2020): CNAPs' FiLM adaptation with a Mahalanobis-distance classifier."""

from __future__ import annotations

import torch
from torch import Tensor

from litemeta.learners.classifiers import MahalanobisClassifier
from litemeta.learners.statistics import class_means, shrunk_class_covariances
from litemeta.learners.task_adaptation import FilmAdaptedLearner

__all__ = ["SimpleCNAPs"]


class SimpleCNAPs(FilmAdaptedLearner):
    """Simple CNAPs: logits ``-(x - mu_k)^T Q_k^{-1} (x - mu_k)`` with
    ``Q_k = lambda_k Sigma_k + (1 - lambda_k) Sigma_task + I``, ``lambda_k = n_k / (n_k + 1)``.

    Options as :class:`~litemeta.learners.task_adaptation.FilmAdaptedLearner`; it has no
    classifier adaptation network.
    """

    name = "simple_cnaps"

    def classifier(
        self,
        features: Tensor,
        labels: Tensor,
        way: int,
        film: list[tuple[Tensor, Tensor]],
        support_shape: torch.Size,
    ) -> MahalanobisClassifier:
        means = class_means(features, labels, way)
        covariances = shrunk_class_covariances(features, labels, means)
        return MahalanobisClassifier(
            self.backbone, support_shape, means, covariances, film, task_film=True
        )
