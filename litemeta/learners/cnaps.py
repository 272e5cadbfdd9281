"""CNAPs (Requeima, Gordon, Bronskill, Nowozin, Turner, "Fast and Flexible Multi-Task
Classification Using Conditional Neural Adaptive Processes", NeurIPS 2019)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone
from litemeta.learners.classifiers import LinearClassifier
from litemeta.learners.statistics import class_means
from litemeta.learners.task_adaptation import FilmAdaptedLearner

__all__ = ["CNAPs", "ClassifierAdaptationNetwork", "DenseResidualBlock"]


class DenseResidualBlock(nn.Module):
    """Three linear layers with ELU between them, ``in_dim -> out_dim -> out_dim -> out_dim``,
    plus the input when ``out_dim == in_dim`` (CNAPs' ``DenseResidualBlock``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, out_dim),
            nn.ELU(),
            nn.Linear(out_dim, out_dim),
            nn.ELU(),
            nn.Linear(out_dim, out_dim),
        )
        self.residual = in_dim == out_dim

    def forward(self, inputs: Tensor) -> Tensor:
        outputs = self.layers(inputs)
        return outputs + inputs if self.residual else outputs


class ClassifierAdaptationNetwork(nn.Module):
    """Class mean ``mu_k`` -> linear classifier weights ``w_k`` and bias ``b_k`` (CNAPs).

    As published: ``w_k = mu_k + f(mu_k)`` and ``b_k = g(mu_k)``, with ``f`` and ``g``
    separate :class:`DenseResidualBlock` networks (``d -> d -> d -> d`` with the residual,
    and ``d -> 1 -> 1 -> 1``).
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.weight_network = DenseResidualBlock(feature_dim, feature_dim)
        self.bias_network = DenseResidualBlock(feature_dim, 1)

    def forward(self, means: Tensor) -> tuple[Tensor, Tensor]:
        return self.weight_network(means), self.bias_network(means).squeeze(1)


class CNAPs(FilmAdaptedLearner):
    """CNAPs: FiLM-adapted backbone and a linear head generated from the class means.

    Options as :class:`~litemeta.learners.task_adaptation.FilmAdaptedLearner`.
    """

    name = "cnaps"

    def __init__(self, backbone: Backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        self.classifier_adaptation = ClassifierAdaptationNetwork(self.backbone.feature_dim)

    def classifier(
        self,
        features: Tensor,
        labels: Tensor,
        way: int,
        film: list[tuple[Tensor, Tensor]],
        support_shape: torch.Size,
    ) -> LinearClassifier:
        weight, bias = self.classifier_adaptation(class_means(features, labels, way))
        return LinearClassifier(
            self.backbone,
            support_shape,
            weight,
            bias,
            film,
            task_film=True,
            head_generator=self.classifier_adaptation,
        )
