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
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone, normalise_images
from litemeta.checkpoint import ModelMismatchError
from litemeta.learners.backbone_learner import BackboneLearner, other_film_layers_error
from litemeta.learners.classifiers import BackboneTaskClassifier
from litemeta.learners.validation import check_support
from litemeta.lite import LiteSettings
from litemeta.precision import full_precision

__all__ = [
    "BACKBONE_IMAGE_SIZE",
    "ENCODER_NORMS",
    "EncoderNorm",
    "FilmAdaptedLearner",
    "FilmGenerator",
    "FrozenStatisticsBatchNorm2d",
    "SetEncoder",
]

_ENCODER_BLOCKS = 5
_REGULARIZER_INIT_STD = 1e-3


EncoderNorm = Literal["group", "frozen_batch"]
ENCODER_NORMS: tuple[str, ...] = get_args(EncoderNorm)

#: ``encoder_image_size`` value that makes the set encoder see the backbone's image size.
BACKBONE_IMAGE_SIZE = "backbone"


class FrozenStatisticsBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that always normalises with its stored running statistics, in
    ``train()`` as in ``eval()``, and never updates them: a per-channel affine map of each
    image on its own. Its tensors are a ``BatchNorm2d``'s, so a reference set encoder's
    state dict loads into it unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.eval()

    def train(self, mode: bool = True) -> FrozenStatisticsBatchNorm2d:
        """Stay in eval mode whatever ``mode`` asks."""
        return super().train(False)


def _encoder_norm(norm: EncoderNorm, channels: int) -> nn.Module:
    if norm == "group":
        return nn.GroupNorm(1, channels)
    return FrozenStatisticsBatchNorm2d(channels)


class SetEncoder(nn.Module):
    """A small conv net that embeds each image on its own (CNAPs' and LITE's set encoder).

    Five blocks of 3x3 convolution, normalisation, ReLU and 2x2 max-pooling, then global
    average pooling, as published (LITE's ``set_encoder.py``). The publications normalise
    with ``BatchNorm2d``; ``norm`` chooses a per-sample normalisation instead, so that each
    image's embedding depends on that image alone, which LITE's exact gradient estimate
    needs: ``"group"`` (``GroupNorm`` with one group) or ``"frozen_batch"``
    (:class:`FrozenStatisticsBatchNorm2d`, the reference's layer run with its stored
    statistics). Images are resized to ``image_size`` and normalised with mean = std = 0.5.
    """

    def __init__(
        self, image_size: int = 84, channels: int = 64, norm: EncoderNorm = "group"
    ) -> None:
        super().__init__()
        if image_size < 2**_ENCODER_BLOCKS:
            raise ValueError(
                f"the set encoder halves the image {_ENCODER_BLOCKS} times: encoder_image_size "
                f"must be at least {2**_ENCODER_BLOCKS}, got {image_size}"
            )
        if norm not in ENCODER_NORMS:
            raise ValueError(f"encoder_norm must be one of {ENCODER_NORMS}, got {norm!r}")
        self.image_size = image_size
        self.embedding_dim = channels
        blocks: list[nn.Module] = []
        in_channels = 3
        for _ in range(_ENCODER_BLOCKS):
            blocks += [
                nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
                _encoder_norm(norm, channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels = channels
        self.layers = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.register_buffer("mean", torch.full((3,), 0.5), persistent=False)
        self.register_buffer("std", torch.full((3,), 0.5), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(normalise_images(images, self.image_size, self.mean, self.std))


def _generator_network(embedding_dim: int, channels: int) -> nn.Sequential:
    """Linear(e, e) - LayerNorm(e) - ReLU - Linear(e, c): one generator of LITE's FiLM
    adaptation network (``features.py``, ``DenseBlock``), from the task embedding of size
    ``e`` to one number per channel."""
    return nn.Sequential(
        nn.Linear(embedding_dim, embedding_dim),
        nn.LayerNorm(embedding_dim),
        nn.ReLU(),
        nn.Linear(embedding_dim, channels),
    )


class FilmGenerator(nn.Module):
    """Task embedding -> FiLM parameters for every FiLM layer of a backbone (LITE's
    ``FilmLayerGenerator``, Bronskill et al., NeurIPS 2021).

    Each FiLM layer with ``c`` channels has its own generators ``g`` and ``b``
    (Linear(e, e), LayerNorm(e), ReLU, Linear(e, c), with ``e`` the task-embedding size)
    and learned regulariser vectors ``r_gamma``, ``r_beta`` of ``c`` numbers (initialised
    from N(0, 1e-3^2)): ``gamma = 1 + r_gamma * g(z)`` and ``beta = r_beta * b(z)``. Small
    regulariser vectors keep the generated parameters near the identity;
    :meth:`regularization_term` is ``sum r_gamma^2 + r_beta^2``.

    Loading a state dict saved with another generator (the earlier
    Linear(e, c) - LayerNorm(c) - ReLU - Linear(c, c) form) or for other FiLM layers raises
    :class:`~litemeta.checkpoint.ModelMismatchError` saying so.
    """

    def __init__(self, channels: list[int], embedding_dim: int) -> None:
        super().__init__()
        self.gamma_generators = nn.ModuleList(
            _generator_network(embedding_dim, c) for c in channels
        )
        self.beta_generators = nn.ModuleList(_generator_network(embedding_dim, c) for c in channels)
        self.gamma_regularizers = nn.ParameterList(
            nn.Parameter(torch.randn(c) * _REGULARIZER_INIT_STD) for c in channels
        )
        self.beta_regularizers = nn.ParameterList(
            nn.Parameter(torch.randn(c) * _REGULARIZER_INIT_STD) for c in channels
        )
        self.register_load_state_dict_pre_hook(_refuse_another_generator)

    def forward(self, task_embedding: Tensor) -> list[tuple[Tensor, Tensor]]:
        """One ``(gamma, beta)`` pair per FiLM layer for a task embedding ``[embedding_dim]``."""
        return [
            (
                1 + gamma_generator(task_embedding) * gamma_scale,
                beta_generator(task_embedding) * beta_scale,
            )
            for gamma_generator, beta_generator, gamma_scale, beta_scale in zip(
                self.gamma_generators,
                self.beta_generators,
                self.gamma_regularizers,
                self.beta_regularizers,
                strict=True,
            )
        ]

    def regularization_term(self) -> Tensor:
        """``sum r_gamma^2 + r_beta^2`` over all FiLM layers (LITE's and CNAPs' regulariser)."""
        scales = [*self.gamma_regularizers, *self.beta_regularizers]
        return torch.stack([scale.square().sum() for scale in scales]).sum()


def _refuse_another_generator(
    generator: FilmGenerator, state_dict: Mapping[str, Any], prefix: str, *_: Any
) -> None:
    """Load pre-hook: refuse saved generator tensors whose names or shapes differ from
    ``generator``'s with a message that says why, before torch's size-mismatch error."""
    saved = {
        key[len(prefix) :]: tuple(value.shape)
        for key, value in state_dict.items()
        if key.startswith(prefix)
    }
    if not saved:  # nothing saved for the generator: torch reports the missing keys
        return
    current = {key: tuple(value.shape) for key, value in generator.state_dict().items()}
    if saved == current:
        return
    layers_saved = sum(key.startswith("gamma_regularizers.") for key in saved)
    if layers_saved != len(generator.gamma_regularizers):
        raise other_film_layers_error(layers_saved, len(generator.gamma_regularizers))
    first = min(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    raise ModelMismatchError(
        f"this checkpoint was saved with an earlier FiLM generator ({prefix}{first}: "
        f"{saved.get(first)} saved, {current.get(first)} now): the generators are now LITE's "
        "Linear(e, e) - LayerNorm(e) - ReLU - Linear(e, c) per FiLM layer of c channels, no "
        "longer Linear(e, c) - LayerNorm(c) - ReLU - Linear(c, c); its weights cannot be "
        "loaded into this version: meta-train the learner again, or convert the checkpoint"
    )


class FilmAdaptedLearner(BackboneLearner):
    """CNAPs-style adaptation: set encoder -> task embedding -> FiLM for the backbone.

    Subclasses turn the adapted support features into a classifier.

    ``encoder_norm`` came after the first saved learners of this kind: :meth:`config`
    records it only when it is not ``"group"``, what they were built with.

    Args:
        backbone: the pretrained feature extractor (frozen unless ``train_backbone``).
        encoder_image_size: side of the images the set encoder sees, or ``"backbone"``
            for the backbone's image size, as LITE and ORBIT, whose set encoder takes the
            same images as the backbone (84 by default, for cost).
        encoder_channels: width of the set encoder, = the task-embedding size (64 as
            published).
        encoder_norm: the set encoder's normalisation, per image either way: ``"group"``
            (``GroupNorm``, one group; default) or ``"frozen_batch"`` (the reference's
            ``BatchNorm2d`` with its stored running statistics, what a converted
            reference checkpoint evaluates with; see :class:`SetEncoder`).
        film_regularization: weight of the FiLM regulariser, the squared norm of the FiLM
            generator's regulariser vectors (0.001 in CNAPs' and LITE's training scripts),
            reported as the classifier's ``regularizer``.
        train_backbone, backbone_lr_scale, chunk_size: see :class:`BackboneLearner`.
    """

    added_options: ClassVar[dict[str, Any]] = {"encoder_norm": "group"}

    def __init__(
        self,
        backbone: Backbone,
        *,
        encoder_image_size: int | Literal["backbone"] = 84,
        encoder_channels: int = 64,
        encoder_norm: EncoderNorm = "group",
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
        self.film_regularization = film_regularization
        if encoder_image_size == BACKBONE_IMAGE_SIZE:
            encoder_image_size = backbone.image_size
        elif not isinstance(encoder_image_size, int):
            raise ValueError(
                f"encoder_image_size must be a number of pixels or {BACKBONE_IMAGE_SIZE!r} "
                f"(the backbone's image size), got {encoder_image_size!r}"
            )
        self.set_encoder = SetEncoder(encoder_image_size, encoder_channels, encoder_norm)
        channels = [layer.channels for layer in backbone.film_layers]
        self.film_generator = FilmGenerator(channels, encoder_channels)

    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LiteSettings | None = None,
        support_clips: Tensor | None = None,
    ) -> BackboneTaskClassifier:
        way = check_support(support_images, support_labels)
        labels = self.clip_labels(support_labels, support_clips)
        # Clip means averaged: the mean over every image of every clip, as ORBIT's set encoder.
        encodings = self.map_support(
            self.set_encoder, support_images, support_labels, lite, support_clips
        )
        film = self.film_generator(encodings.mean(dim=0))
        embed = self.backbone.with_film(film)
        features = self.map_support(embed, support_images, support_labels, lite, support_clips)
        with full_precision(features.device):
            classifier = self.classifier(
                features, labels.to(features.device), way, film, support_images.shape[1:]
            )
        classifier.regularizer = (
            self.film_regularization * self.film_generator.regularization_term()
        )
        classifier.support_features = features.detach()
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
