"""Prototypical Networks (Snell, Swersky, Zemel, "Prototypical Networks for Few-shot
Learning", NeurIPS 2017): class means of support features, squared Euclidean logits."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone
from litemeta.learners.backbone_learner import BackboneLearner, other_film_layers_error
from litemeta.learners.classifiers import PrototypeClassifier
from litemeta.learners.statistics import class_means
from litemeta.learners.validation import check_support
from litemeta.lite import LitePass
from litemeta.precision import full_precision

__all__ = ["ProtoNets"]

MetaTrained = Literal["backbone", "film"]


class ProtoNets(BackboneLearner):
    """ProtoNets on a timm backbone.

    Args:
        backbone: the feature extractor.
        meta_train: ``"backbone"`` meta-trains the backbone weights (at
            ``backbone_lr_scale`` times the base rate); ``"film"`` freezes them and
            meta-learns one set of FiLM parameters shared by all tasks.
        distance_scale: ``None`` for the plain squared Euclidean logits; a number makes
            the logits ``-s * ||x - mu_k||^2`` with ``s`` meta-learned from that start
            (metric scaling, Oreshkin et al., "TADAM", NeurIPS 2018). Pretrained features
            have squared distances in the thousands, so plain logits saturate the softmax;
            a start of about ``1 / typical distance`` keeps meta-training well-conditioned.
            The scale never changes which class is predicted.
        backbone_lr_scale: see :class:`BackboneLearner`.
    """

    name = "protonets"

    def __init__(
        self,
        backbone: Backbone,
        *,
        meta_train: MetaTrained = "backbone",
        distance_scale: float | None = None,
        backbone_lr_scale: float | None = None,
    ) -> None:
        if meta_train not in ("backbone", "film"):
            raise ValueError(f"meta_train must be 'backbone' or 'film', got {meta_train!r}")
        if distance_scale is not None and distance_scale <= 0:
            raise ValueError(f"distance_scale must be positive or None, got {distance_scale}")
        super().__init__(
            backbone,
            train_backbone=meta_train == "backbone",
            backbone_lr_scale=backbone_lr_scale,
        )
        self.log_distance_scale = (
            None if distance_scale is None else nn.Parameter(torch.tensor(math.log(distance_scale)))
        )
        self.film_gammas = nn.ParameterList()
        self.film_betas = nn.ParameterList()
        if meta_train == "film":
            for gamma, beta in backbone.identity_film():
                self.film_gammas.append(nn.Parameter(gamma))
                self.film_betas.append(nn.Parameter(beta))
        self.register_load_state_dict_pre_hook(_refuse_other_film_layers)

    def shared_film(self) -> list[tuple[Tensor, Tensor]] | None:
        """The meta-learned FiLM parameters, or ``None`` when the backbone is meta-trained."""
        if not self.film_gammas:
            return None
        return list(zip(self.film_gammas, self.film_betas, strict=True))

    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LitePass | None = None,
        support_clips: Tensor | None = None,
    ) -> PrototypeClassifier:
        way = check_support(support_images, support_labels)
        labels = self.clip_labels(support_labels, support_clips)
        film = self.shared_film()
        embed = self.backbone.with_film(film)
        features = self.map_support(embed, support_images, support_labels, lite, support_clips)
        with full_precision(features.device):
            prototypes = class_means(features, labels.to(features.device), way)
        scale = None if self.log_distance_scale is None else self.log_distance_scale.exp()
        classifier = PrototypeClassifier(
            self.backbone, support_images.shape[1:], prototypes, film, distance_scale=scale
        )
        classifier.support_features = features.detach()
        return classifier


def _refuse_other_film_layers(
    learner: ProtoNets, state_dict: Mapping[str, Any], prefix: str, *_: Any
) -> None:
    """Load pre-hook: refuse meta-learned FiLM parameters saved for another number of FiLM
    layers, saying why, before torch's missing-key and size-mismatch errors."""
    saved = sum(key.startswith(f"{prefix}film_gammas.") for key in state_dict)
    if saved and saved != len(learner.film_gammas):
        raise other_film_layers_error(saved, len(learner.film_gammas))
