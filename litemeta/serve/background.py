"""The background of "none of these": what a backbone's features of images in general share,
taken from all drawings of evenly spaced classes of the built-in emoji set's training split
(shipped with the package, so nothing is downloaded): their mean, and the directions along
which drawings of one emoji by different artists differ.

Features of all images share a large common part (for emoji: "a drawing on white"), so the
cosine of two features is high even for different emoji; removing the mean leaves what sets
an image apart (a background reference as in the relative Mahalanobis distance, Ren et al.,
"A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection", 2021). A taught
class's new images are often by another artist or camera than its examples, so the score
then also discounts the directions of the largest *within-class* variance: each of the top
:data:`BACKGROUND_DIRECTIONS` eigenvectors of the within-class covariance (eigenvalue ``e``)
keeps ``sqrt(r / (e + r))`` of its part, ``r`` being :data:`BACKGROUND_SHRINKAGE` times the
mean eigenvalue over all dimensions: whitening by the within-class covariance plus ``r``
times the identity (within-class covariance normalisation, Hatch et al., "Within-Class
Covariance Normalization for SVM-based Speaker Recognition", Interspeech 2006), cut to the
top directions so an export carries ``k x d`` numbers, not ``d x d``. docs/benchmarks.md
("Open set") has what it adds, and `scripts/openset-background` the comparison it was
chosen by.

The background is of the backbone's features without FiLM (CNAPs and Simple CNAPs adapt
theirs per task), computed once per backbone object and kept while it lives: a backbone
whose weights change afterwards (training) must not be served through this cache.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

import torch
from torch import Tensor

from litemeta.backbones import Backbone
from litemeta.data.emoji import load_emoji
from litemeta.learners.statistics import class_means
from litemeta.precision import full_precision
from litemeta.serve.calibration import Background

__all__ = [
    "BACKGROUND_CLASSES",
    "BACKGROUND_DIRECTIONS",
    "BACKGROUND_SHRINKAGE",
    "background_features",
    "background_images",
    "background_of",
    "within_class_background",
]

#: Classes of the emoji training split whose drawings (7 each) the background is taken from:
#: on the validation split, 128 gave the AUROC of all 1,012 within 0.003 (docs/benchmarks.md).
BACKGROUND_CLASSES = 128
#: Top within-class directions discounted: 32, 64 and 128 gave AUROCs within 0.003 of each
#: other and of all 1,280 (meta-trained and pretrained, validation split).
BACKGROUND_DIRECTIONS = 64
#: The ridge ``r`` in units of the mean eigenvalue: 0.3, 1 and 3 gave AUROCs within 0.002.
BACKGROUND_SHRINKAGE = 1.0
_CHUNK = 64
_BACKGROUNDS: WeakKeyDictionary[Backbone, Background] = WeakKeyDictionary()


def background_images(image_size: int, classes: int = BACKGROUND_CLASSES) -> tuple[Tensor, Tensor]:
    """All images ``[n, 3, S, S]`` (uint8) of ``classes`` classes of the emoji training
    split, evenly spaced through its classes in order, and their classes ``[n]`` (0 to
    ``classes - 1``)."""
    emoji = load_emoji("train", decode_size=image_size)
    total = len(emoji.class_names)
    if classes < 2 or classes > total:
        raise ValueError(f"classes must be 2 to {total} (the training classes), got {classes}")
    picks = torch.linspace(0, total - 1, classes).round().long().tolist()
    images, labels = [], []
    for label, class_id in enumerate(picks):
        for item in range(emoji.num_items(class_id)):
            images.append(emoji.read_item(class_id, item))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def within_class_background(
    features: Tensor,
    labels: Tensor,
    directions: int = BACKGROUND_DIRECTIONS,
    shrinkage: float = BACKGROUND_SHRINKAGE,
) -> Background:
    """The background of features ``[n, d]`` of classes ``labels`` ``[n]``: their mean, the
    top ``directions`` eigenvectors of the pooled within-class covariance, and the share
    ``sqrt(r / (e + r))`` of each kept (``e`` its eigenvalue, ``r`` the mean eigenvalue
    times ``shrinkage``)."""
    features = features.double()
    classes = int(labels.max()) + 1
    if features.shape[0] <= classes:
        raise ValueError(f"need more images ({features.shape[0]}) than classes ({classes})")
    deviations = features - class_means(features, labels, classes)[labels]
    covariance = deviations.T @ deviations / (features.shape[0] - classes)
    values, vectors = torch.linalg.eigh(covariance)
    order = values.argsort(descending=True)[:directions]
    top = values[order].clamp_min(0)
    ridge = shrinkage * values.clamp_min(0).mean()
    kept = (ridge / (top + ridge)).sqrt()
    return Background(features.mean(0).float(), vectors[:, order].T.float(), kept.float())


def background_features(backbone: Backbone) -> tuple[Tensor, Tensor]:
    """``backbone``'s features (no FiLM) ``[n, d]`` of :func:`background_images`, float64
    on the CPU, and their classes ``[n]``."""
    images, labels = background_images(backbone.image_size)
    device = next(backbone.parameters()).device
    with torch.no_grad(), full_precision(device):
        chunks = [backbone(chunk.to(device)).double().cpu() for chunk in images.split(_CHUNK)]
    return torch.cat(chunks), labels


def background_of(backbone: Backbone) -> Background:
    """:func:`within_class_background` of :func:`background_features`, float32 on the CPU;
    computed on the first call for this backbone object."""
    cached = _BACKGROUNDS.get(backbone)
    if cached is not None:
        return cached
    background = within_class_background(*background_features(backbone))
    _BACKGROUNDS[backbone] = background
    return background
