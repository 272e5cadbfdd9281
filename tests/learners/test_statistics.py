"""Vectorised class statistics against naive per-class loops (torchmeta-style references)."""

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


def loop_covariance(rows):
    if len(rows) == 1:
        return torch.zeros(DIM, DIM, dtype=rows.dtype)
    return torch.cov(rows.T)  # unbiased, divides by n - 1


def loop_mahalanobis_logits():
    means = loop_means()
    task = loop_covariance(features)
    logits = torch.empty(len(queries), WAY, dtype=torch.float64)
    for k in range(WAY):
        rows = features[labels == k]
        weight = len(rows) / (len(rows) + 1)
        q = weight * loop_covariance(rows) + (1 - weight) * task + torch.eye(DIM)
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


def test_mahalanobis_logits_equal_a_naive_loop_with_explicit_inverses():
    means = class_means(features, labels, WAY)
    q = shrunk_class_covariances(features, labels, means)
    logits = mahalanobis_logits(queries, means, torch.linalg.cholesky(q))
    torch.testing.assert_close(logits, loop_mahalanobis_logits())


def test_mahalanobis_with_identity_covariance_is_euclidean():
    means = loop_means()
    identity = torch.eye(DIM, dtype=torch.float64).expand(WAY, DIM, DIM)
    torch.testing.assert_close(
        mahalanobis_logits(queries, means, identity), squared_euclidean_logits(queries, means)
    )
