"""Vectorised class statistics against naive per-class loops (torchmeta-style references)."""

import pytest
import torch

from litemeta.learners.statistics import (
    class_covariances,
    class_means,
    mahalanobis_logits,
    shrunk_class_covariances,
    squared_euclidean_logits,
    task_covariance,
)

torch.manual_seed(0)
DIM, WAY = 5, 4
# unequal class sizes, one class with a single image, shuffled order
labels = torch.tensor([2, 0, 1, 0, 2, 3, 1, 0, 2, 2, 1, 0, 2])
features = torch.randn(labels.numel(), DIM, dtype=torch.float64) * 2 + 1
queries = torch.randn(7, DIM, dtype=torch.float64) * 2


def loop_means():
    return torch.stack([features[labels == k].mean(0) for k in range(WAY)])


def loop_covariance(rows, single_example="zero"):
    if len(rows) == 1:
        if single_example == "zero":
            return torch.zeros(DIM, DIM, dtype=rows.dtype)
        # The reference's estimate of one row: the variance of its entries, everywhere.
        x = rows[0]
        variance = ((x - x.mean()) ** 2).sum() / (DIM - 1)
        return torch.full((DIM, DIM), variance.item(), dtype=rows.dtype)
    return torch.cov(rows.T)  # unbiased, divides by n - 1


def loop_mahalanobis_logits(single_example):
    means = loop_means()
    task = loop_covariance(features)
    logits = torch.empty(len(queries), WAY, dtype=torch.float64)
    for k in range(WAY):
        rows = features[labels == k]
        weight = len(rows) / (len(rows) + 1)
        class_covariance = loop_covariance(rows, single_example)
        q = weight * class_covariance + (1 - weight) * task + torch.eye(DIM)
        precision = torch.linalg.inv(q)
        for i, query in enumerate(queries):
            diff = query - means[k]
            logits[i, k] = -(diff @ precision @ diff)
    return logits


def test_prototypes_equal_per_class_means():
    torch.testing.assert_close(class_means(features, labels, WAY), loop_means())


def test_euclidean_logits_equal_a_loop_over_queries_and_classes():
    means = loop_means()
    expected = torch.tensor(
        [[-((q - m) ** 2).sum().item() for m in means] for q in queries], dtype=torch.float64
    )
    torch.testing.assert_close(squared_euclidean_logits(queries, means), expected)


def test_class_and_task_covariances_equal_per_class_loops():
    expected = torch.stack([loop_covariance(features[labels == k]) for k in range(WAY)])
    torch.testing.assert_close(class_covariances(features, labels, loop_means()), expected)
    torch.testing.assert_close(task_covariance(features), loop_covariance(features))


@pytest.mark.parametrize("single_example", ["feature_variance", "zero"])
def test_mahalanobis_logits_equal_a_naive_loop_with_explicit_inverses(single_example):
    means = class_means(features, labels, WAY)
    q = shrunk_class_covariances(features, labels, means, single_example)
    logits = mahalanobis_logits(queries, means, torch.linalg.cholesky(q))
    torch.testing.assert_close(logits, loop_mahalanobis_logits(single_example))


# A hand-worked one-shot task, d = 3: class 0 holds x = (1, 2, 4) alone, class 1 holds
# (0, 0, 0) and (2, 0, 0).
#   x's entries have mean 7/3 and squared deviations 16/9 + 1/9 + 25/9 = 42/9; their unbiased
#   variance is 42/9 / (3 - 1) = 7/3, so the reference's Sigma_0 = 7/3 in every entry.
#   Sigma_1 = diag(2, 0, 0) (deviations (-1, 0, 0) and (1, 0, 0), divided by 2 - 1).
#   The task mean is (1, 2/3, 4/3); deviations (0, 4/3, 8/3), (-1, -2/3, -4/3),
#   (1, -2/3, -4/3) give Sigma_task = [[1, 0, 0], [0, 4/3, 8/3], [0, 8/3, 16/3]].
#   Q_0 = 1/2 Sigma_0 + 1/2 Sigma_task + I (lambda_0 = 1/2), and
#   Q_1 = 2/3 Sigma_1 + 1/3 Sigma_task + I (lambda_1 = 2/3).
ONE_SHOT_FEATURES = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
ONE_SHOT_LABELS = torch.tensor([0, 1, 1])
Q1 = torch.tensor([[8 / 3, 0, 0], [0, 13 / 9, 8 / 9], [0, 8 / 9, 25 / 9]])


def test_one_shot_class_covariance_is_the_reference_feature_variance_by_default():
    means = class_means(ONE_SHOT_FEATURES, ONE_SHOT_LABELS, 2)
    q = shrunk_class_covariances(ONE_SHOT_FEATURES, ONE_SHOT_LABELS, means)
    q0 = torch.tensor([[8 / 3, 7 / 6, 7 / 6], [7 / 6, 17 / 6, 5 / 2], [7 / 6, 5 / 2, 29 / 6]])
    torch.testing.assert_close(q, torch.stack([q0, Q1]))


def test_one_shot_class_covariance_can_be_zero():
    means = class_means(ONE_SHOT_FEATURES, ONE_SHOT_LABELS, 2)
    q = shrunk_class_covariances(ONE_SHOT_FEATURES, ONE_SHOT_LABELS, means, "zero")
    q0 = torch.tensor([[3 / 2, 0, 0], [0, 5 / 3, 4 / 3], [0, 4 / 3, 11 / 3]])
    torch.testing.assert_close(q, torch.stack([q0, Q1]))


def test_an_unknown_single_example_covariance_is_refused():
    with pytest.raises(ValueError, match="must be one of"):
        class_covariances(ONE_SHOT_FEATURES, ONE_SHOT_LABELS, ONE_SHOT_FEATURES[:2], "one")


def test_mahalanobis_with_identity_covariance_is_euclidean():
    means = loop_means()
    identity = torch.eye(DIM, dtype=torch.float64).expand(WAY, DIM, DIM)
    torch.testing.assert_close(
        mahalanobis_logits(queries, means, identity), squared_euclidean_logits(queries, means)
    )
