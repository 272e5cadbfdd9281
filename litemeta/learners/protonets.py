"""Prototypical Networks (Snell, Swersky, Zemel, "Prototypical Networks for Few-shot
Learning", NeurIPS 2017): class means of support features, squared Euclidean logits."""

from __future__ import annotations

from functools import partial
from typing import Literal

from torch import Tensor, nn

from litemeta.backbones import Backbone
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.classifiers import PrototypeClassifier
from litemeta.learners.statistics import class_means
from litemeta.learners.validation import check_support
from litemeta.lite import LiteSettings

__all__ = ["ProtoNets"]

MetaTrained = Literal["backbone", "film"]


class ProtoNets(BackboneLearner):
    """ProtoNets on a timm backbone.

    Args:
        backbone: the feature extractor.
        meta_train: ``"backbone"`` meta-trains the backbone weights (at
            ``backbone_lr_scale`` times the base rate); ``"film"`` freezes them and
            meta-learns one set of FiLM parameters shared by all tasks.
        backbone_lr_scale, chunk_size: see :class:`BackboneLearner`.
    """

    name = "protonets"

    def __init__(
        self,
        backbone: Backbone,
        *,
        meta_train: MetaTrained = "backbone",
        backbone_lr_scale: float | None = None,
        chunk_size: int = 64,
    ) -> None:
        if meta_train not in ("backbone", "film"):
            raise ValueError(f"meta_train must be 'backbone' or 'film', got {meta_train!r}")
        super().__init__(
            backbone,
            train_backbone=meta_train == "backbone",
            backbone_lr_scale=backbone_lr_scale,
            chunk_size=chunk_size,
        )
        self.options.update(meta_train=meta_train, backbone_lr_scale=self.backbone_lr_scale)
        self.film_gammas = nn.ParameterList()
        self.film_betas = nn.ParameterList()
        if meta_train == "film":
            for gamma, beta in backbone.identity_film():
                self.film_gammas.append(nn.Parameter(gamma))
                self.film_betas.append(nn.Parameter(beta))

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
        lite: LiteSettings | None = None,
    ) -> PrototypeClassifier:
        way = check_support(support_images, support_labels)
        film = self.shared_film()
        embed = partial(self.backbone, film=film)
        features = self.map_support(embed, support_images, support_labels, lite)
        prototypes = class_means(features, support_labels.to(features.device), way)
        return PrototypeClassifier(self.backbone, support_images.shape[1:], prototypes, film)
