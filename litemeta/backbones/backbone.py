"""A timm feature extractor that owns its preprocessing, keeps frozen statistics and takes FiLM."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from litemeta.backbones.film import (
    FilmHooks,
    FilmLayer,
    FilmParameters,
    FilmPlacement,
    default_film_placement,
)
from litemeta.backbones.frozen_layers import FrozenLayerBackward
from litemeta.backbones.preprocessing import normalise_images

__all__ = ["Backbone", "FilmedBackbone"]


class Backbone(nn.Module):
    """Images (uint8 0..255 or float 0..1) -> pooled penultimate features ``[n, feature_dim]``.

    The wrapped timm model (built with ``num_classes=0``) always runs in eval mode, also
    while the learner is meta-trained: normalisation uses its running statistics and
    dropout is off, so every image's features depend on that image alone, which LITE
    needs (Bronskill et al., NeurIPS 2021). ``forward(images, film)`` applies FiLM
    parameters (one ``(gamma, beta)`` pair per FiLM layer, see :attr:`film_layers`, chosen
    by ``film_placement``: ``"published"`` or ``"all"``, see :mod:`litemeta.backbones.film`;
    default: the published placement where one is defined); ``film=None`` is the plain
    backbone. ``pretrained`` records whether the weights were pretrained (learners then
    meta-train it with a lower rate).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        pretrained: bool = False,
        film_placement: FilmPlacement | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.name = name
        self.image_size = image_size
        self.pretrained = pretrained
        self.feature_dim: int = getattr(model, "head_hidden_size", None) or model.num_features
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)
        self.film_placement = film_placement or default_film_placement(model)
        self._film = FilmHooks(model, self.film_placement)

    @property
    def film_layers(self) -> list[FilmLayer]:
        """The layers FiLM modulates, in the order FiLM parameters are given."""
        return self._film.layers

    def identity_film(self) -> list[tuple[Tensor, Tensor]]:
        """FiLM parameters that leave the features unchanged (gamma = 1, beta = 0)."""
        return self._film.identity(device=self.mean.device, dtype=self.mean.dtype)

    def preprocess(self, images: Tensor) -> Tensor:
        """Resize to :attr:`image_size` and normalise with the backbone's mean and std."""
        return normalise_images(images, self.image_size, self.mean, self.std)

    def forward(self, images: Tensor, film: FilmParameters | None = None) -> Tensor:
        with self._film.applied(film), self._frozen_layer_backward():
            return self.model(self.preprocess(images))

    def _frozen_layer_backward(self) -> AbstractContextManager:
        """:class:`FrozenLayerBackward` when autograd records and some weights are frozen
        (FiLM-adapted learners): their layers then keep no activations for backward."""
        if torch.is_grad_enabled() and not all(p.requires_grad for p in self.model.parameters()):
            return FrozenLayerBackward()
        return nullcontext()

    def with_film(self, film: FilmParameters | None) -> FilmedBackbone:
        """This backbone under fixed FiLM parameters, as a function of the images alone."""
        return FilmedBackbone(self, film)

    def train(self, mode: bool = True) -> Backbone:
        """Set the mode of this module but keep the timm model in eval mode (frozen statistics)."""
        super().train(mode)
        self.model.eval()
        return self

    def config(self) -> dict[str, Any]:
        """JSON-able arguments of :func:`litemeta.backbones.create_backbone` that rebuild it."""
        return {
            "name": self.name,
            "image_size": self.image_size,
            "film_placement": self.film_placement,
        }


class FilmedBackbone:
    """A backbone under fixed FiLM parameters: ``images -> features``.

    Two are equal when they hold the same backbone and the same FiLM parameters (the same
    objects), i.e. when they compute the same function: a learner's support map and its
    classifier's query embedding compare equal, which lets a LITE step embed the drawn
    support rows and a query batch in one pass.
    """

    def __init__(self, backbone: Backbone, film: FilmParameters | None) -> None:
        self.backbone = backbone
        self.film = film

    def __call__(self, images: Tensor) -> Tensor:
        return self.backbone(images, self.film)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FilmedBackbone)
            and other.backbone is self.backbone
            and other.film is self.film
        )

    def __hash__(self) -> int:
        return hash((id(self.backbone), id(self.film)))
