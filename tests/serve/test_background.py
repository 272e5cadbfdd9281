"""The background against numpy (the mean, the pooled within-class covariance's top
eigenvectors and the shares kept) of features computed in small batches, over all images of
classes taken evenly through the emoji training split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litemeta.data.emoji import load_emoji
from litemeta.learners import build_learner
from litemeta.serve.background import (
    BACKGROUND_CLASSES,
    BACKGROUND_DIRECTIONS,
    background_images,
    background_of,
    within_class_background,
)

SIZE = 32


def test_background_images_are_every_image_of_classes_spread_from_the_first_to_the_last():
    emoji = load_emoji("train", decode_size=SIZE)
    last_class = len(emoji.class_names) - 1
    images, labels = background_images(SIZE, classes=3)
    sizes = [emoji.num_items(c) for c in (0, last_class // 2, last_class)]
    assert images.shape == (sum(sizes), 3, SIZE, SIZE) and images.dtype == torch.uint8
    assert labels.tolist() == [0] * sizes[0] + [1] * sizes[1] + [2] * sizes[2]
    assert torch.equal(images[0], emoji.read_item(0, 0))
    assert torch.equal(images[-1], emoji.read_item(last_class, sizes[2] - 1))
    with pytest.raises(ValueError, match="classes must be 2 to"):
        background_images(SIZE, classes=1)


def test_the_within_class_background_against_numpy():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 4)
    spread = np.linspace(2, 0.1, 8)  # within-class variances far apart along the axes
    features = rng.normal(size=(5, 8))[labels] * 3 + rng.normal(size=(20, 8)) * spread
    background = within_class_background(torch.from_numpy(features), torch.from_numpy(labels), 3)
    # By hand: deviations from each class's mean, pooled with n - classes degrees of freedom.
    deviations = features - np.stack([features[labels == c].mean(0) for c in labels])
    values, vectors = np.linalg.eigh(deviations.T @ deviations / (20 - 5))
    top = np.argsort(values)[::-1][:3]
    assert background.mean.numpy() == pytest.approx(features.mean(0), abs=1e-6)
    directions = background.directions.double().numpy()
    assert directions @ directions.T == pytest.approx(np.eye(3), abs=1e-6)
    # Compared one direction at a time (signs differ): the eigenvectors of the top values.
    for row, column in zip(directions, top, strict=True):
        assert abs(row @ vectors[:, column]) == pytest.approx(1, abs=1e-5)
    expected = np.sqrt(values.mean() / (values[top] + values.mean()))
    assert background.kept.numpy() == pytest.approx(expected, rel=1e-5)
    assert (np.diff(expected) > 0).all()  # the largest within-class variance is kept least
    with pytest.raises(ValueError, match="more images"):
        within_class_background(torch.zeros(3, 2), torch.arange(3))


def test_the_background_of_a_backbone_is_of_its_features_and_kept_per_backbone():
    torch.manual_seed(0)
    backbone = build_learner("protonets", "resnet18", SIZE, pretrained=False).eval().backbone
    background = background_of(backbone)
    images, labels = background_images(SIZE)
    assert int(labels.max()) + 1 == BACKGROUND_CLASSES
    with torch.no_grad():
        features = torch.cat([backbone(batch).double() for batch in images.split(7)])
    expected = within_class_background(features, labels)
    assert background.mean.numpy() == pytest.approx(expected.mean.numpy(), rel=1e-4, abs=1e-5)
    assert background.directions.shape == (BACKGROUND_DIRECTIONS, features.shape[1])
    assert background.kept.numpy() == pytest.approx(expected.kept.numpy(), rel=1e-3)
    assert background_of(backbone) is background  # computed once for this backbone
    torch.manual_seed(1)
    other = build_learner("protonets", "resnet18", SIZE, pretrained=False).eval().backbone
    assert not torch.allclose(background_of(other).mean, background.mean)
