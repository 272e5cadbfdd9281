"""Shared base of the learners built on a FiLM-able backbone."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from litemeta.backbones import Backbone
from litemeta.learners.base import FewShotLearner
from litemeta.lite import LiteSettings, SetFunction, lite_map
from litemeta.precision import at_least_float32

__all__ = ["BackboneLearner"]

PRETRAINED_BACKBONE_LR_SCALE = 0.1


class BackboneLearner(FewShotLearner):
    """A learner around a :class:`~litemeta.backbones.Backbone`.

    Args:
        backbone: the feature extractor.
        train_backbone: meta-train the backbone weights (otherwise they are frozen).
        backbone_lr_scale: the backbone's learning rate relative to the rest; default 0.1
            for a pretrained backbone, 1 for a randomly initialised one.
        chunk_size: support images per forward call when adapting without LITE (with LITE,
            :class:`~litemeta.lite.LiteSettings` sets it); bounds test-time memory.
    """

    #: The name :func:`litemeta.learners.build_learner` knows this learner by.
    name: ClassVar[str]

    def __init__(
        self,
        backbone: Backbone,
        *,
        train_backbone: bool,
        backbone_lr_scale: float | None = None,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of images, got {chunk_size}")
        if backbone_lr_scale is None:
            backbone_lr_scale = PRETRAINED_BACKBONE_LR_SCALE if backbone.pretrained else 1.0
        self.backbone = backbone.requires_grad_(train_backbone)
        self.train_backbone = train_backbone
        self.backbone_lr_scale = backbone_lr_scale
        self.chunk_size = chunk_size
        #: JSON-able constructor options (besides the backbone) that rebuild this learner.
        self.options: dict[str, Any] = {"chunk_size": chunk_size}

    def config(self) -> dict[str, Any]:
        """JSON-able description that :func:`litemeta.learners.learner_from_config` rebuilds."""
        return {"learner": self.name, "backbone": self.backbone.config(), "options": self.options}

    def map_support(
        self, fn: SetFunction, images: Tensor, labels: Tensor, lite: LiteSettings | None
    ) -> Tensor:
        """``fn`` over the support images: through LITE when meta-training, else in chunks.

        The result is float32 whatever the forward pass's precision: the statistics built
        from it (means, covariances, their factorisations) run in float32.
        """
        if lite is not None:
            return at_least_float32(lite.map(fn, images, labels))
        return at_least_float32(lite_map(fn, images, None, chunk_size=self.chunk_size))

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The backbone at ``base_lr * backbone_lr_scale``, everything else at ``base_lr``."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {
                "name": "backbone",
                "params": [p for p in trainable if id(p) in in_backbone],
                "lr": base_lr * self.backbone_lr_scale,
            },
            {
                "name": "head",
                "params": [p for p in trainable if id(p) not in in_backbone],
                "lr": base_lr,
            },
        ]
        return [group for group in groups if group["params"]]
