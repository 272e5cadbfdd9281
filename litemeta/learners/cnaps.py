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

__all__ = ["CNAPs", "ClassifierAdaptationNetwork"]


def _zero_initialised_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


class ClassifierAdaptationNetwork(nn.Module):
    """Class mean ``mu_k`` -> linear classifier weights ``w_k`` and bias ``b_k`` (CNAPs).

    The generated head is parametrised as a learned residual around the linear form of
    prototypical networks (Snell et al., 2017), ``w_k = 2 mu_k + f(mu_k)`` and
    ``b_k = -||mu_k||^2 + g(mu_k)``, with ``f`` and ``g`` small MLPs that start at zero.
    """

    def __init__(self, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.weight_residual = _zero_initialised_mlp(feature_dim, hidden_dim, feature_dim)
        self.bias_residual = _zero_initialised_mlp(feature_dim, hidden_dim, 1)

    def forward(self, means: Tensor) -> tuple[Tensor, Tensor]:
        weight = 2 * means + self.weight_residual(means)
        bias = -means.square().sum(dim=1) + self.bias_residual(means).squeeze(1)
        return weight, bias


class CNAPs(FilmAdaptedLearner):
    """CNAPs: FiLM-adapted backbone and a linear head generated from the class means.

    Options as :class:`~litemeta.learners.task_adaptation.FilmAdaptedLearner`, plus
    ``classifier_hidden_dim``, the width of the classifier adaptation network.
    """

    name = "cnaps"

    def __init__(
        self, backbone: Backbone, *, classifier_hidden_dim: int = 256, **options: Any
    ) -> None:
        super().__init__(backbone, **options)
        self.options["classifier_hidden_dim"] = classifier_hidden_dim
        self.classifier_adaptation = ClassifierAdaptationNetwork(
            self.backbone.feature_dim, classifier_hidden_dim
        )

    def classifier(
        self,
        features: Tensor,
        labels: Tensor,
        way: int,
        film: list[tuple[Tensor, Tensor]],
        support_shape: torch.Size,
    ) -> LinearClassifier:
        weight, bias = self.classifier_adaptation(class_means(features, labels, way))
        return LinearClassifier(self.backbone, support_shape, weight, bias, film, task_film=True)
