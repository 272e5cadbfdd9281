"""Task-conditioned FiLM adaptation shared by CNAPs and Simple CNAPs.

Requeima, Gordon, Bronskill, Nowozin, Turner. "Fast and Flexible Multi-Task Classification
Using Conditional Neural Adaptive Processes", NeurIPS 2019: a set encoder pools the support
set into a task embedding, from which a generator produces FiLM parameters that adapt a
pretrained backbone to the task. The adapted backbone then embeds the support set again.
Both set functions go through LITE (Bronskill et al., NeurIPS 2021) with independent
subsets (two :meth:`~litemeta.lite.LitePass.map` calls): a shared subset would make the
product of the two estimates biased.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from litemeta.backbones import Backbone, normalise_images
from litemeta.checkpoint import ModelMismatchError
from litemeta.learners.backbone_learner import BackboneLearner, other_film_layers_error
from litemeta.learners.classifiers import BackboneTaskClassifier
from litemeta.learners.validation import check_support
from litemeta.lite import LitePass, check_chunk_size
from litemeta.precision import at_least_float32, full_precision
from litemeta.tasks import pool_clips

__all__ = [
    "BACKBONE_IMAGE_SIZE",
    "ENCODER_INPUT_NORMS",
    "ENCODER_NORMS",
    "BatchStatisticsBatchNorm2d",
    "EncoderInputNorm",
    "EncoderNorm",
    "FilmAdaptedLearner",
    "FilmGenerator",
    "FrozenStatisticsBatchNorm2d",
    "SetEncoder",
    "lite_test_chunks",
]

_ENCODER_BLOCKS = 5
_REGULARIZER_INIT_STD = 1e-3


EncoderNorm = Literal["group", "frozen_batch", "batch"]
ENCODER_NORMS: tuple[str, ...] = get_args(EncoderNorm)

#: How the set encoder normalises its images: LITE's mean = std = 0.5 or the backbone's own.
EncoderInputNorm = Literal["half", "backbone"]
ENCODER_INPUT_NORMS: tuple[str, ...] = get_args(EncoderInputNorm)

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


class BatchStatisticsBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that always normalises with the statistics of the batch it is given,
    in ``eval()`` as in ``train()``, and never updates its stored running statistics: the
    reference set encoders' layer as LITE's ``run.py`` runs it at test time (its model stays
    in train mode). It couples the images of a batch; its tensors are a ``BatchNorm2d``'s."""

    #: What :func:`litemeta.lite.lite_map` advises when it refuses this layer.
    row_coupling_advice = (
        "This is the set encoder of encoder_norm='batch' (LITE's test-time batch statistics), "
        "for evaluation only: meta-train with encoder_norm='frozen_batch' (the same tensors, "
        "stored statistics) or 'group'"
    )

    def train(self, mode: bool = True) -> BatchStatisticsBatchNorm2d:
        """Stay in train mode (batch statistics) whatever ``mode`` asks."""
        return super().train(True)

    def forward(self, images: Tensor) -> Tensor:
        return nn.functional.batch_norm(
            images, None, None, self.weight, self.bias, training=True, eps=self.eps
        )


def _encoder_norm(norm: EncoderNorm, channels: int) -> nn.Module:
    if norm == "group":
        return nn.GroupNorm(1, channels)
    if norm == "batch":
        return BatchStatisticsBatchNorm2d(channels)
    return FrozenStatisticsBatchNorm2d(channels)


def lite_test_chunks(num_images: int, chunk_size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each batch of support images that LITE's test code gives its set
    encoder (``model.py``, ``build_task_representation_by_batch`` with
    ``_get_batch_indices``): ``ceil(n / chunk_size)`` batches of ``chunk_size``, a batch
    that would leave one image over taking it. For ``n = q * chunk_size + 1`` (``q >= 1``)
    the batch count is not reduced, so a last batch holds the last image again, alone:
    that image is encoded twice and counts twice in the mean, as LITE computes it."""
    chunks = []
    for index in range(-(-num_images // chunk_size)):
        start = index * chunk_size
        end = start + chunk_size
        if end == num_images - 1:
            end = num_images
        chunks.append((start, min(end, num_images)))
    return chunks


class SetEncoder(nn.Module):
    """A small conv net that embeds each image on its own (CNAPs' and LITE's set encoder).

    Five blocks of 3x3 convolution, normalisation, ReLU and 2x2 max-pooling, then global
    average pooling, as published (LITE's ``set_encoder.py``). The publications normalise
    with ``BatchNorm2d``; ``norm`` chooses a per-sample normalisation instead, so that each
    image's embedding depends on that image alone, which LITE's exact gradient estimate
    needs: ``"group"`` (``GroupNorm`` with one group) or ``"frozen_batch"``
    (:class:`FrozenStatisticsBatchNorm2d`, the reference's layer run with its stored
    statistics). Images are resized to ``image_size`` and normalised with ``mean`` and
    ``std`` per channel (default 0.5 and 0.5, LITE's input range [-1, 1]).
    """

    def __init__(
        self,
        image_size: int = 84,
        channels: int = 64,
        norm: EncoderNorm = "group",
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
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
        self.norm = norm
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
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(normalise_images(images, self.image_size, self.mean, self.std))

    def encode_in_lite_test_chunks(self, images: Tensor, chunk_size: int) -> Tensor:
        """The images' embeddings, computed in the batches of :func:`lite_test_chunks`
        (one row per image of each batch: ``n + 1`` rows where LITE encodes the last image
        twice). With ``norm="batch"`` each batch is normalised with its own statistics,
        as LITE's test code computes the task representation (``chunk_size`` 40 there)."""
        chunks = lite_test_chunks(images.shape[0], chunk_size)
        return torch.cat([self(images[start:end]) for start, end in chunks])


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
        encoder_norm: the set encoder's normalisation: per image, ``"group"``
            (``GroupNorm``, one group; default) or ``"frozen_batch"`` (the reference's
            ``BatchNorm2d`` with its stored running statistics, ORBIT's test-time set
            encoder); or ``"batch"``, for evaluation only: the support set's batch
            statistics, per batch of ``encoder_batch_size`` images chunked as LITE's test
            code (:func:`lite_test_chunks`; LITE's ``run.py`` with batches of 40), so that
            the batch size changes the result. It couples the images of a batch, so
            meta-training refuses it (:meth:`meta_training_error`); see
            :class:`SetEncoder`.
        encoder_batch_size: with ``encoder_norm="batch"``, the images per batch whose
            statistics normalise them; ``None``: the learner's run-time ``chunk_size``.
        encoder_input_norm: how the set encoder normalises its images: ``"half"`` (mean =
            std = 0.5, LITE's [-1, 1]; default) or ``"backbone"`` (the backbone's mean and
            std, as ORBIT, whose set encoder sees the frames its backbone sees).
        film_regularization: weight of the FiLM regulariser, the squared norm of the FiLM
            generator's regulariser vectors (0.001 in CNAPs' and LITE's training scripts),
            reported as the classifier's ``regularizer``.
        train_backbone, backbone_lr_scale: see :class:`BackboneLearner`.
    """

    added_options: ClassVar[dict[str, Any]] = {
        "encoder_norm": "group",
        "encoder_input_norm": "half",
        "encoder_batch_size": None,
    }

    def __init__(
        self,
        backbone: Backbone,
        *,
        encoder_image_size: int | Literal["backbone"] = 84,
        encoder_channels: int = 64,
        encoder_norm: EncoderNorm = "group",
        encoder_input_norm: EncoderInputNorm = "half",
        encoder_batch_size: int | None = None,
        film_regularization: float = 1e-3,
        train_backbone: bool = False,
        backbone_lr_scale: float | None = None,
    ) -> None:
        super().__init__(
            backbone,
            train_backbone=train_backbone,
            backbone_lr_scale=backbone_lr_scale,
        )
        check_chunk_size(encoder_batch_size, name="encoder_batch_size", optional=True)
        self.encoder_batch_size = encoder_batch_size
        self.film_regularization = film_regularization
        if encoder_image_size == BACKBONE_IMAGE_SIZE:
            encoder_image_size = backbone.image_size
        elif not isinstance(encoder_image_size, int):
            raise ValueError(
                f"encoder_image_size must be a number of pixels or {BACKBONE_IMAGE_SIZE!r} "
                f"(the backbone's image size), got {encoder_image_size!r}"
            )
        if encoder_input_norm not in ENCODER_INPUT_NORMS:
            raise ValueError(
                f"encoder_input_norm must be one of {ENCODER_INPUT_NORMS}, "
                f"got {encoder_input_norm!r}"
            )
        if encoder_input_norm == "backbone":
            mean, std = backbone.mean.tolist(), backbone.std.tolist()
        else:
            mean, std = [0.5] * 3, [0.5] * 3
        self.set_encoder = SetEncoder(
            encoder_image_size, encoder_channels, encoder_norm, mean=mean, std=std
        )
        channels = [layer.channels for layer in backbone.film_layers]
        self.film_generator = FilmGenerator(channels, encoder_channels)

    def adapt(
        self,
        support_images: Tensor,
        support_labels: Tensor,
        *,
        lite: LitePass | None = None,
        support_clips: Tensor | None = None,
    ) -> BackboneTaskClassifier:
        way = check_support(support_images, support_labels)
        labels = self.clip_labels(support_labels, support_clips)
        # Clip means averaged: the mean over every image of every clip, as ORBIT's set encoder.
        if self.set_encoder.norm == "batch" and lite is None:
            batch = self.encoder_batch_size or self.chunk_size
            encoded = self.set_encoder.encode_in_lite_test_chunks(support_images, batch)
            encodings = pool_clips(at_least_float32(encoded), support_clips)
        else:  # with "batch", LITE's map refuses the batch statistics (RowCouplingError)
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

    def meta_training_error(self) -> str | None:
        """Why this learner cannot be meta-trained, or ``None``: ``encoder_norm="batch"``
        normalises the set encoder's images with the statistics of their batch, so no
        image's embedding is its own, which LITE's gradient estimate needs."""
        if self.set_encoder.norm != "batch":
            return None
        return (
            "encoder_norm='batch' normalises the set encoder's support images with the "
            "statistics of each batch of them (LITE's test-time computation), which couples "
            "the images, so LITE's gradient estimate, which needs each image's embedding on "
            "its own, would be biased; it is for evaluation and personalisation only. "
            "Meta-train with model.options.encoder_norm=frozen_batch (the same tensors, "
            "normalised with their stored statistics) or group"
        )

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
