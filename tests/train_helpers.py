"""Tiny learners and synthetic task streams for the training and evaluation tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from litemeta.learners.base import FewShotLearner, TaskClassifier
from litemeta.lite import LitePass
from litemeta.tasks import Task, pool_clips


class _PrototypeClassifier(TaskClassifier):
    def __init__(self, learner: TinyProtoNet, prototypes: Tensor) -> None:
        super().__init__()
        self.learner = learner
        self.prototypes = prototypes
        self.regularizer = 1e-2 * prototypes.pow(2).mean()

    def embed(self, images: Tensor) -> Tensor:
        return self.learner.embed(images)

    def logits(self, features: Tensor) -> Tensor:
        return -torch.cdist(features, self.prototypes).pow(2)


class TinyProtoNet(FewShotLearner):
    """Prototypical network (Snell et al., 2017) over a two-layer embedding of tiny images."""

    def __init__(self, image_size: int = 6, channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size * image_size, width),
            nn.Tanh(),
            nn.Linear(width, width),
        )

    def embed(self, images: Tensor) -> Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        return self.network(images)

    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LitePass | None = None,
        support_clips: Tensor | None = None,
    ) -> TaskClassifier:
        if lite is None:
            features = self.embed(support_images)
        else:
            features = lite.map(self.embed, support_images, support_labels)
        features = pool_clips(features, support_clips)
        if support_clips is not None:
            support_labels = support_labels[support_clips[:, 0]]
        way = int(support_labels.max()) + 1
        sums = features.new_zeros(way, features.shape[1]).index_add(0, support_labels, features)
        counts = torch.bincount(support_labels, minlength=way).to(features.dtype)
        return _PrototypeClassifier(self, sums / counts[:, None])


class Untrainable(TinyProtoNet):
    meta_trainable = False


@dataclass
class SyntheticTasks:
    """Task ``i`` of a deterministic stream: Gaussian blobs around per-class mean images."""

    seed: int = 0
    way: int = 3
    shot: int = 4
    query_per_class: int = 5
    image_size: int = 6

    def __call__(self, index: int) -> Task:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        shape = (3, self.image_size, self.image_size)
        means = torch.rand(self.way, *shape, generator=generator)

        def draw(per_class: int) -> tuple[Tensor, Tensor]:
            labels = torch.arange(self.way).repeat_interleave(per_class)
            noise = 0.3 * torch.randn(len(labels), *shape, generator=generator)
            return (means[labels] + noise).clamp(0, 1), labels

        support, support_labels = draw(self.shot)
        query, query_labels = draw(self.query_per_class)
        return Task(
            support_images=support,
            support_labels=support_labels,
            query_images=query,
            query_labels=query_labels,
            class_names=[f"class{c}" for c in range(self.way)],
        )
