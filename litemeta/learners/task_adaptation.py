"""Task-conditioned FiLM adaptation shared by CNAPs and Simple CNAPs.

Requeima, Gordon, Bronskill, Nowozin, Turner. "Fast and Flexible Multi-Task Classification
Using Conditional Neural Adaptive Processes", NeurIPS 2019: a set encoder pools the support
set into a task embedding, from which a generator produces FiLM parameters that adapt a
pretrained backbone to the task. The adapted backbone then embeds the support set again.
Both set functions go through LITE (Bronskill et al., NeurIPS 2021) with independent
subsets (two :meth:`~litemeta.lite.LiteSettings.map` calls): a shared subset would make the
product of the two estimates biased.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone, normalise_images
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.classifiers import BackboneTaskClassifier
from litemeta.learners.validation import check_support
from litemeta.lite import LiteSettings
from litemeta.precision import full_precision

__all__ = ["FilmAdaptedLearner", "FilmGenerator", "SetEncoder"]

_ENCODER_BLOCKS = 4


class SetEncoder(nn.Module):
    """A small conv net that embeds each image on its own (CNAPs' set encoder).

    Four blocks of 3x3 convolution, per-sample normalisation (``GroupNorm`` with one group,
    never batch statistics, so each image's embedding depends on that image alone), ReLU and
    2x2 max-pooling, then global average pooling. Images are resized to ``image_size`` and
    normalised with mean = std = 0.5.
    """

    def __init__(self, image_size: int = 84, channels: int = 64) -> None:
        super().__init__()
        if image_size < 2**_ENCODER_BLOCKS:
            raise ValueError(
                f"the set encoder halves the image {_ENCODER_BLOCKS} times: encoder_image_size "
                f"must be at least {2**_ENCODER_BLOCKS}, got {image_size}"
            )
        self.image_size = image_size
        self.embedding_dim = channels
        blocks: list[nn.Module] = []
        in_channels = 3
        for _ in range(_ENCODER_BLOCKS):
            blocks += [
                nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
                nn.GroupNorm(1, channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels = channels
        self.layers = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.register_buffer("mean", torch.full((3,), 0.5), persistent=False)
        self.register_buffer("std", torch.full((3,), 0.5), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(normalise_images(images, self.image_size, self.mean, self.std))


class FilmGenerator(nn.Module):
    """Task embedding -> FiLM parameters for every normalisation layer of a backbone.

    A shared hidden layer feeds one linear generator per FiLM layer that outputs offsets
    around the identity: ``gamma = 1 + delta_gamma``, ``beta = delta_beta``. The generators
    start at zero, so an untrained learner uses the plain pretrained backbone.
    """

    def __init__(self, channels: list[int], embedding_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.channels = channels
        self.hidden = nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.ReLU())
        self.layer_generators = nn.ModuleList(nn.Linear(hidden_dim, 2 * c) for c in channels)
        for generator in self.layer_generators:
            nn.init.zeros_(generator.weight)
            nn.init.zeros_(generator.bias)

    def forward(self, task_embedding: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """FiLM parameters and the sum of their squared offsets from the identity."""
        hidden = self.hidden(task_embedding)
        film, squared_offsets = [], task_embedding.new_zeros(())
        for generator in self.layer_generators:
            delta_gamma, delta_beta = generator(hidden).chunk(2)
            film.append((1 + delta_gamma, delta_beta))
            squared_offsets = (
                squared_offsets + delta_gamma.square().sum() + delta_beta.square().sum()
            )
        return film, squared_offsets


class FilmAdaptedLearner(BackboneLearner):
    """CNAPs-style adaptation: set encoder -> task embedding -> FiLM for the backbone.

    Subclasses turn the adapted support features into a classifier.

    Args:
        backbone: the pretrained feature extractor (frozen unless ``train_backbone``).
        encoder_image_size: side of the images the set encoder sees.
        encoder_channels: width of the set encoder, = the task-embedding size.
        generator_hidden_dim: width of the FiLM generator's shared hidden layer.
        film_regularization: weight of the FiLM regulariser, ``sum (gamma - 1)^2 + beta^2``
            over the generated parameters (CNAPs' weight decay on them), reported as the
            classifier's ``regularizer``.
        train_backbone, backbone_lr_scale, chunk_size: see :class:`BackboneLearner`.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        encoder_image_size: int = 84,
        encoder_channels: int = 64,
        generator_hidden_dim: int = 64,
        film_regularization: float = 1e-3,
        train_backbone: bool = False,
        backbone_lr_scale: float | None = None,
        chunk_size: int = 64,
    ) -> None:
        super().__init__(
            backbone,
            train_backbone=train_backbone,
            backbone_lr_scale=backbone_lr_scale,
            chunk_size=chunk_size,
        )
        self.options.update(
            encoder_image_size=encoder_image_size,
            encoder_channels=encoder_channels,
            generator_hidden_dim=generator_hidden_dim,
            film_regularization=film_regularization,
            train_backbone=train_backbone,
            backbone_lr_scale=self.backbone_lr_scale,
        )
        self.film_regularization = film_regularization
        self.set_encoder = SetEncoder(encoder_image_size, encoder_channels)
        channels = [layer.channels for layer in backbone.film_layers]
        self.film_generator = FilmGenerator(channels, encoder_channels, generator_hidden_dim)

    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LiteSettings | None = None,
    ) -> BackboneTaskClassifier:
        way = check_support(support_images, support_labels)
        encodings = self.map_support(self.set_encoder, support_images, support_labels, lite)
        film, squared_offsets = self.film_generator(encodings.mean(dim=0))
        embed = partial(self.backbone, film=film)
        features = self.map_support(embed, support_images, support_labels, lite)
        with full_precision(features.device):
            classifier = self.classifier(
                features, support_labels.to(features.device), way, film, support_images.shape[1:]
            )
        classifier.regularizer = self.film_regularization * squared_offsets
        return classifier

    @abstractmethod
    def classifier(
        self,
        features: Tensor,
        labels: Tensor,
        way: int,
        film: list[tuple[Tensor, Tensor]],
        support_shape: torch.Size,
    ) -> BackboneTaskClassifier:
        """The task classifier built from the adapted support features."""
