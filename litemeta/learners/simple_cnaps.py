"""Simple CNAPs (Bateni, Goyal, Masrani, Wood, Sigal, "Improved Few-Shot Visual
Classification", CVPR 2020): CNAPs' FiLM adaptation with a Mahalanobis-distance classifier."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from litemeta.backbones import Backbone
from litemeta.learners.classifiers import MahalanobisClassifier
from litemeta.learners.statistics import (
    SINGLE_EXAMPLE_COVARIANCES,
    SingleExampleCovariance,
    class_means,
    shrunk_class_covariances,
)
from litemeta.learners.task_adaptation import FilmAdaptedLearner

__all__ = ["SimpleCNAPs"]


class SimpleCNAPs(FilmAdaptedLearner):
    """Simple CNAPs: logits ``-(x - mu_k)^T Q_k^{-1} (x - mu_k)`` with
    ``Q_k = lambda_k Sigma_k + (1 - lambda_k) Sigma_task + I``, ``lambda_k = n_k / (n_k + 1)``.

    Options as :class:`~litemeta.learners.task_adaptation.FilmAdaptedLearner`, plus
    ``single_example_covariance``, the covariance ``Sigma`` of a class (or task) with one
    support image: ``"feature_variance"`` (default), as the reference code computes it, the
    variance of the image's feature entries in every entry of the matrix; ``"zero"``, no
    class-specific spread (the unbiased estimate's convention). Either keeps ``Q_k``
    positive definite. It has no classifier adaptation network.
    """

    name = "simple_cnaps"

    def __init__(
        self,
        backbone: Backbone,
        *,
        single_example_covariance: SingleExampleCovariance = "feature_variance",
        **options: Any,
    ) -> None:
        if single_example_covariance not in SINGLE_EXAMPLE_COVARIANCES:
            raise ValueError(
                f"single_example_covariance must be one of {SINGLE_EXAMPLE_COVARIANCES}, "
                f"got {single_example_covariance!r}"
            )
        super().__init__(backbone, **options)
        self.single_example_covariance: SingleExampleCovariance = single_example_covariance

    def classifier(
        self,
        features: Tensor,
        labels: Tensor,
        way: int,
        film: list[tuple[Tensor, Tensor]],
        support_shape: torch.Size,
    ) -> MahalanobisClassifier:
        means = class_means(features, labels, way)
        covariances = shrunk_class_covariances(
            features, labels, means, self.single_example_covariance
        )
        return MahalanobisClassifier(
            self.backbone, support_shape, means, covariances, film, task_film=True
        )
