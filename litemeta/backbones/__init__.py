"""Feature extractors: timm CNNs with FiLM, owned preprocessing and frozen statistics."""

from litemeta.backbones.backbone import Backbone, FilmedBackbone
from litemeta.backbones.film import (
    FILM_PLACEMENTS,
    FilmLayer,
    FilmParameters,
    FilmPlacement,
    find_film_layers,
)
from litemeta.backbones.preprocessing import normalise_images
from litemeta.backbones.registry import (
    DEFAULT_BACKBONE,
    SUPPORTED_BACKBONES,
    TIMM_PREFIX,
    check_backbone,
    create_backbone,
)
from litemeta.backbones.weights import efficientnet_lite0_file, efficientnet_lite0_imagenet_head

__all__ = [
    "DEFAULT_BACKBONE",
    "FILM_PLACEMENTS",
    "SUPPORTED_BACKBONES",
    "TIMM_PREFIX",
    "Backbone",
    "FilmLayer",
    "FilmParameters",
    "FilmPlacement",
    "FilmedBackbone",
    "check_backbone",
    "create_backbone",
    "efficientnet_lite0_file",
    "efficientnet_lite0_imagenet_head",
    "find_film_layers",
    "normalise_images",
]
