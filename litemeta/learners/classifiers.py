"""Task classifiers on backbone features: prototypes, linear heads, Mahalanobis distance."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone, FilmedBackbone, FilmParameters
from litemeta.learners.base import TaskClassifier
from litemeta.learners.exported import (
    FilmedBackboneModule,
    LinearHead,
    PrototypeHead,
    WhitenedDistanceHead,
)
from litemeta.learners.statistics import (
    class_means,
    mahalanobis_logits,
    squared_euclidean_logits,
)
from litemeta.learners.validation import check_query
from litemeta.precision import at_least_float32, full_precision
from litemeta.tasks import pool_clips

__all__ = [
    "BackboneTaskClassifier",
    "LinearClassifier",
    "MahalanobisClassifier",
    "PrototypeClassifier",
]


def _class_means_without(features: Tensor, labels: Tensor, way: int, row: int) -> Tensor:
    """The class means ``[way, d]`` of ``features`` without row ``row``."""
    keep = torch.arange(labels.shape[0], device=labels.device) != row
    return class_means(features[keep], labels[keep], way)


class BackboneTaskClassifier(TaskClassifier):
    """Embeds query images with the (FiLM-adapted) backbone, then scores the features.

    ``task_film`` marks FiLM parameters specific to this task (generated or fine-tuned),
    which count as task parameters; shared, meta-learned FiLM parameters do not.
    :attr:`embed` is the query embedding, equal to the learner's support map;
    ``classify`` scores its features, or the
    mean feature of each of ``clips`` (ORBIT's clip pooling). ``support_features`` are the
    (detached) support features the learner built it from, when it records them, so that
    diagnostics such as leave-one-out need no second pass over the support images.
    """

    support_features: Tensor | None = None

    def __init__(
        self,
        backbone: Backbone,
        support_shape: torch.Size,
        film: FilmParameters | None = None,
        *,
        task_film: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.support_shape = support_shape
        self.film = film
        self.task_film = task_film
        self._embedding = backbone.with_film(film)

    @property
    def embed(self) -> FilmedBackbone:  # type: ignore[override]
        """The query embedding: the backbone under this task's FiLM parameters, equal
        (:meth:`~litemeta.backbones.FilmedBackbone.__eq__`) to the map the learner ran over
        the support set, which lets a LITE step embed drawn support rows with a query batch."""
        return self._embedding

    def __call__(self, query_images: Tensor, clips: Tensor | None = None) -> Tensor:
        check_query(query_images, self.support_shape)
        return super().__call__(query_images, clips)

    def classify(self, features: Tensor, clips: Tensor | None = None) -> Tensor:
        """Logits for features from :attr:`embed` (or for the mean feature of each of
        ``clips``), in float32 with autocast off."""
        features = pool_clips(at_least_float32(features), clips)
        with full_precision(features.device):
            return self.logits(features)

    def export_embedding(self) -> nn.Module:
        return FilmedBackboneModule(self.backbone, self.film)

    def task_parameters(self) -> dict[str, Tensor]:
        if not (self.task_film and self.film):
            return {}
        return {"film": torch.cat([torch.cat(pair) for pair in self.film])}


class PrototypeClassifier(BackboneTaskClassifier):
    """Negative squared Euclidean distance to class prototypes (Snell et al., 2017),
    optionally times a meta-learned scale (Oreshkin et al., 2018)."""

    def __init__(
        self,
        backbone: Backbone,
        support_shape: torch.Size,
        prototypes: Tensor,
        film: FilmParameters | None = None,
        *,
        distance_scale: Tensor | None = None,
    ) -> None:
        super().__init__(backbone, support_shape, film)
        self.prototypes = prototypes
        self.distance_scale = distance_scale

    def logits(self, features: Tensor) -> Tensor:
        logits = squared_euclidean_logits(features, self.prototypes)
        return logits if self.distance_scale is None else logits * self.distance_scale

    def export_head(self) -> nn.Module:
        return PrototypeHead(self.prototypes, self.distance_scale)

    def logits_without(self, features: Tensor, labels: Tensor, way: int, row: int) -> Tensor:
        """The prototypes without the example: exactly adapting to the others where the
        support features do not depend on the other examples (no task-specific FiLM)."""
        logits = squared_euclidean_logits(
            features[row : row + 1], _class_means_without(features, labels, way, row)
        )
        return logits if self.distance_scale is None else logits * self.distance_scale

    def task_parameters(self) -> dict[str, Tensor]:
        return {**super().task_parameters(), "prototypes": self.prototypes}


class LinearClassifier(BackboneTaskClassifier):
    """``w_k . x + b_k``: CNAPs' generated head or the fine-tuning baseline's trained one.

    ``head_generator`` maps class means ``[way, d]`` to ``(weight, bias)`` where the head is
    generated from them (CNAPs), so that it can be generated again without an example.
    """

    def __init__(
        self,
        backbone: Backbone,
        support_shape: torch.Size,
        weight: Tensor,
        bias: Tensor,
        film: FilmParameters | None = None,
        *,
        task_film: bool = False,
        head_generator: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        super().__init__(backbone, support_shape, film, task_film=task_film)
        self.weight = weight
        self.bias = bias
        self.head_generator = head_generator

    def logits(self, features: Tensor) -> Tensor:
        return features @ self.weight.T + self.bias

    def export_head(self) -> nn.Module:
        return LinearHead(self.weight, self.bias)

    def logits_without(self, features: Tensor, labels: Tensor, way: int, row: int) -> Tensor:
        """The head generated again from the other examples' class means (the FiLM
        parameters generated from the whole task are kept)."""
        if self.head_generator is None:
            raise ValueError(
                "this linear head was trained on every support example (the fine-tuning "
                "baseline) and cannot be rebuilt without one, which the quality report and "
                "calibration need: serve ProtoNets, CNAPs or Simple CNAPs"
            )
        weight, bias = self.head_generator(_class_means_without(features, labels, way, row))
        return features[row : row + 1] @ weight.T + bias

    def task_parameters(self) -> dict[str, Tensor]:
        return {**super().task_parameters(), "weight": self.weight, "bias": self.bias}


class MahalanobisClassifier(BackboneTaskClassifier):
    """Negative squared Mahalanobis distance to class means (Bateni et al., CVPR 2020).

    Where no gradient flows through ``Q_k`` (evaluation, personalisation, serving), ``Q_k`` is
    factorised, and the logits solved, in float64 (from the float32 statistics), and the
    logits returned in the features' precision. ``Q_k``'s eigenvalues run from the features'
    spread squared down to 1 (its ``+ I``): a float32 Cholesky factor and solve lose as much
    as the references' float32 inverse at logits below 10^4 and about twice as much beyond;
    in float64 only the result's rounding is left (docs/reproduce.md). Meta-training keeps
    them in float32, where float64 would cost 1.7 times as much on the CPU.
    """

    def __init__(
        self,
        backbone: Backbone,
        support_shape: torch.Size,
        means: Tensor,
        covariances: Tensor,
        film: FilmParameters | None = None,
        *,
        task_film: bool = False,
    ) -> None:
        super().__init__(backbone, support_shape, film, task_film=task_film)
        self.means = means
        covariances = at_least_float32(covariances)
        if not covariances.requires_grad:
            covariances = covariances.to(torch.float64)
        with full_precision(covariances.device):
            self.cholesky_factors = torch.linalg.cholesky(covariances)

    def logits(self, features: Tensor) -> Tensor:
        factors = self.cholesky_factors
        means = self.means.to(factors.dtype)
        return mahalanobis_logits(features.to(factors.dtype), means, factors).to(features.dtype)

    def export_head(self) -> nn.Module:
        """The distances from the inverse Cholesky factors (ONNX has no triangular solve)."""
        return WhitenedDistanceHead(self.means, self.cholesky_factors)

    def logits_without(self, features: Tensor, labels: Tensor, way: int, row: int) -> Tensor:
        """The class means without the example, the covariances of all (factorising a class
        covariance again per example would cost a d x d Cholesky factorisation each)."""
        means = _class_means_without(features, labels, way, row)
        return mahalanobis_logits(features[row : row + 1], means, self.cholesky_factors)

    def task_parameters(self) -> dict[str, Tensor]:
        return {
            **super().task_parameters(),
            "means": self.means,
            "cholesky_factors": self.cholesky_factors,
        }
