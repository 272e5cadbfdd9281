"""The background against numpy (the mean, the covariance's top eigenvectors) of features
computed in small batches, over images taken evenly through the emoji training split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litemeta.data.emoji import load_emoji
from litemeta.learners import build_learner
from litemeta.serve.background import (
    BACKGROUND_DIRECTIONS,
    BACKGROUND_IMAGES,
    background_images,
    background_of,
)

SIZE = 32


def test_background_images_are_spread_evenly_from_the_first_to_the_last():
    emoji = load_emoji("train", decode_size=SIZE)
    last_class = len(emoji.class_names) - 1
    images = background_images(SIZE, count=3)
    assert images.shape == (3, 3, SIZE, SIZE) and images.dtype == torch.uint8
    assert torch.equal(images[0], emoji.read_item(0, 0))
    assert torch.equal(images[2], emoji.read_item(last_class, emoji.num_items(last_class) - 1))
    assert not torch.equal(images[1], images[0]) and not torch.equal(images[1], images[2])
    with pytest.raises(ValueError, match="count must be 1 to"):
        background_images(SIZE, count=0)


def test_the_background_is_the_mean_and_top_covariance_directions_kept_per_backbone():
    torch.manual_seed(0)
    backbone = build_learner("protonets", "resnet18", SIZE, pretrained=False).eval().backbone
    background = background_of(backbone)
    images = background_images(SIZE)
    with torch.no_grad():
        features = np.concatenate([backbone(batch).double().numpy() for batch in images.split(7)])
    assert features.shape[0] == BACKGROUND_IMAGES
    mean, directions = background.mean.numpy(), background.directions.double().numpy()
    assert background.mean.dtype == torch.float32 and mean.shape == (features.shape[1],)
    assert mean == pytest.approx(features.mean(0), rel=1e-4, abs=1e-5)
    # The directions: orthonormal, and the covariance's top eigenvectors (by numpy's eigh;
    # compared as projections, which do not depend on signs).
    assert directions.shape == (BACKGROUND_DIRECTIONS, features.shape[1])
    assert directions @ directions.T == pytest.approx(np.eye(BACKGROUND_DIRECTIONS), abs=1e-5)
    values, vectors = np.linalg.eigh(np.cov(features.T))
    top = vectors[:, np.argsort(values)[::-1][:BACKGROUND_DIRECTIONS]]
    assert directions.T @ directions == pytest.approx(top @ top.T, abs=1e-3)
    assert background_of(backbone) is background  # computed once for this backbone
    torch.manual_seed(1)
    other = build_learner("protonets", "resnet18", SIZE, pretrained=False).eval().backbone
    assert not torch.allclose(background_of(other).mean, background.mean)
