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
    assert classifier.cholesky_factors.dtype == torch.float64  # no gradient: in float64
    q0 = (classifier.cholesky_factors[0] @ classifier.cholesky_factors[0].T).float()
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
        torch.testing.assert_close((factor @ factor.T).float(), expected, rtol=1e-4, atol=1e-4)


def test_simple_cnaps_logits_equal_mahalanobis_distances_computed_by_hand(task):
    """Q_k = n_k/(n_k+1) Sigma_k + 1/(n_k+1) Sigma_task + I from the FiLM-adapted support
    features; logits -(x - mu_k)^T Q_k^-1 (x - mu_k), with explicit inverses in float64."""
    torch.manual_seed(0)
    learner = build_learner("simple_cnaps", image_size=BACKBONE_SIZE, **TINY_ENCODER).eval()
    support, support_labels, query, _ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        features = learner.backbone(support, classifier.film).double()
        queries = learner.backbone(query, classifier.film).double()
        logits = classifier(query)
    d = features.shape[1]
    task_cov = torch.cov(features.T)
    expected = torch.empty(len(query), 3, dtype=torch.float64)
    for k in range(3):
        rows = features[support_labels == k]
        blend = len(rows) / (len(rows) + 1)
        q = blend * torch.cov(rows.T) + (1 - blend) * task_cov + torch.eye(d)
        inverse = torch.linalg.inv(q)
        for n, x in enumerate(queries):
            centred = x - rows.mean(dim=0)
            expected[n, k] = -(centred @ inverse @ centred)
    torch.testing.assert_close(logits.double(), expected, rtol=1e-3, atol=1e-3)


def test_an_unknown_single_example_covariance_is_refused():
    with pytest.raises(ValueError, match="single_example_covariance must be one of"):
        build_learner("simple_cnaps", image_size=BACKBONE_SIZE, single_example_covariance="one")
