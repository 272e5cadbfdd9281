"""Simple CNAPs: the Mahalanobis classifier on blended class and task covariances."""

import pytest
import torch

from litemeta.learners import build_learner

from .helpers import BACKBONE_SIZE

TINY_ENCODER = {"encoder_image_size": 32, "encoder_channels": 8}


def test_simple_cnaps_classifier_uses_the_blended_class_covariances(task):
    torch.manual_seed(0)
    learner = build_learner("simple_cnaps", image_size=BACKBONE_SIZE, **TINY_ENCODER)
    support, support_labels, *_ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        features = learner.backbone(support, classifier.film)
    q0 = classifier.cholesky_factors[0] @ classifier.cholesky_factors[0].T
    rows = features[support_labels == 0]
    expected = 0.8 * torch.cov(rows.T) + 0.2 * torch.cov(features.T) + torch.eye(rows.shape[1])
    torch.testing.assert_close(q0, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("single_example", ["feature_variance", "zero"])
def test_simple_cnaps_one_shot_covariance(task, single_example):
    """One image per class: lambda = 1/2, and Sigma_k is the variance s_k of the image's d
    feature entries in every entry (the reference code), or zero."""
    torch.manual_seed(0)
    learner = build_learner(
        "simple_cnaps",
        image_size=BACKBONE_SIZE,
        single_example_covariance=single_example,
        **TINY_ENCODER,
    )
    support, support_labels, *_ = task
    first_of_each = [support_labels.tolist().index(k) for k in range(3)]
    support, support_labels = support[first_of_each], support_labels[first_of_each]
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        features = learner.backbone(support, classifier.film)
    d = features.shape[1]
    for k in range(3):
        x = features[k]
        s = ((x - x.mean()) ** 2).sum() / (d - 1)
        sigma = s * torch.ones(d, d) if single_example == "feature_variance" else 0
        expected = 0.5 * sigma + 0.5 * torch.cov(features.T) + torch.eye(d)
        factor = classifier.cholesky_factors[k]
        torch.testing.assert_close(factor @ factor.T, expected, rtol=1e-4, atol=1e-4)
