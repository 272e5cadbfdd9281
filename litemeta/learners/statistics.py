"""Per-class statistics of support features, vectorised over classes."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SINGLE_EXAMPLE_COVARIANCES",
    "SingleExampleCovariance",
    "class_covariances",
    "class_means",
    "mahalanobis_logits",
    "shrunk_class_covariances",
    "squared_euclidean_logits",
    "task_covariance",
]

#: The covariance estimate of a set with one feature vector ``x`` of ``d`` dimensions:
#: ``"feature_variance"``, the reference Simple CNAPs code's value, the unbiased variance
#: ``s`` of the ``d`` entries of ``x`` in every entry of the ``[d, d]`` matrix (``s 1 1^T``);
#: ``"zero"``, the zero matrix (no spread can be estimated from one example).
SingleExampleCovariance = Literal["feature_variance", "zero"]
SINGLE_EXAMPLE_COVARIANCES: tuple[str, ...] = get_args(SingleExampleCovariance)


def class_means(features: Tensor, labels: Tensor, way: int) -> Tensor:
    """Mean feature of each class ``[way, d]`` (ProtoNets' prototypes; Snell et al., 2017)."""
    one_hot = F.one_hot(labels, way).to(features.dtype)
    return (one_hot.T @ features) / one_hot.sum(dim=0).unsqueeze(1)


def squared_euclidean_logits(features: Tensor, prototypes: Tensor) -> Tensor:
    """``-||x - mu_k||^2`` for every query ``x`` and prototype ``mu_k``: ``[n, way]``."""
    return -(features.unsqueeze(1) - prototypes.unsqueeze(0)).square().sum(dim=-1)


def _padded_by_class(rows: Tensor, labels: Tensor, way: int) -> Tensor:
    """``[way, max class size, d]``: each class's rows, zero-padded to the largest class."""
    counts = torch.bincount(labels, minlength=way)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    class_start = torch.cumsum(counts, dim=0) - counts
    position = torch.arange(labels.numel(), device=labels.device) - class_start[sorted_labels]
    padded = rows.new_zeros(way, int(counts.max()), rows.shape[1])
    padded[sorted_labels, position] = rows[order]
    return padded


def _single_example_covariances(rows: Tensor, kind: SingleExampleCovariance) -> Tensor:
    """``[n, d, d]``: the covariance estimate of each row taken as a set of one (see
    :data:`SingleExampleCovariance`)."""
    n, d = rows.shape
    if kind == "zero":
        return rows.new_zeros(n, d, d)
    if kind == "feature_variance":
        return rows.var(dim=1).view(n, 1, 1).expand(n, d, d)
    raise ValueError(
        f"the single-example covariance must be one of {SINGLE_EXAMPLE_COVARIANCES}, got {kind!r}"
    )


def class_covariances(
    features: Tensor,
    labels: Tensor,
    means: Tensor,
    single_example: SingleExampleCovariance = "zero",
) -> Tensor:
    """Unbiased covariance of each class ``[way, d, d]`` (divided by ``n_k - 1``); a class
    with one image gets the ``single_example`` estimate."""
    way = means.shape[0]
    centred = _padded_by_class(features - means[labels], labels, way)
    counts = torch.bincount(labels, minlength=way)
    covariances = centred.transpose(1, 2) @ centred
    covariances = covariances / (counts - 1).clamp(min=1).to(features.dtype).view(-1, 1, 1)
    one_example = (counts == 1).view(-1, 1, 1)
    # A one-image class's mean is its image.
    return torch.where(one_example, _single_example_covariances(means, single_example), covariances)


def task_covariance(features: Tensor, single_example: SingleExampleCovariance = "zero") -> Tensor:
    """Unbiased covariance of all support features ``[d, d]``; the ``single_example``
    estimate for a single image."""
    if features.shape[0] == 1:
        return _single_example_covariances(features, single_example)[0]
    centred = features - features.mean(dim=0)
    return centred.T @ centred / (features.shape[0] - 1)


def shrunk_class_covariances(
    features: Tensor,
    labels: Tensor,
    means: Tensor,
    single_example: SingleExampleCovariance = "feature_variance",
) -> Tensor:
    """Simple CNAPs' regularised class covariances (Bateni et al., CVPR 2020):
    ``Q_k = lambda_k Sigma_k + (1 - lambda_k) Sigma_task + I`` with
    ``lambda_k = n_k / (n_k + 1)``; ``single_example`` sets ``Sigma`` of a set of one image
    (default: the reference code's, see :data:`SingleExampleCovariance`)."""
    counts = torch.bincount(labels, minlength=means.shape[0]).to(features.dtype)
    weight = (counts / (counts + 1)).view(-1, 1, 1)
    identity = torch.eye(features.shape[1], dtype=features.dtype, device=features.device)
    per_class = class_covariances(features, labels, means, single_example)
    task = task_covariance(features, single_example)
    return weight * per_class + (1 - weight) * task + identity


def mahalanobis_logits(features: Tensor, means: Tensor, cholesky_factors: Tensor) -> Tensor:
    """``-(x - mu_k)^T Q_k^{-1} (x - mu_k)`` for every query and class, ``[n, way]``, given
    the lower Cholesky factors ``L_k`` of ``Q_k``: the squared norm of ``L_k^{-1}(x - mu_k)``."""
    differences = (features.unsqueeze(0) - means.unsqueeze(1)).transpose(1, 2)  # [way, d, n]
    whitened = torch.linalg.solve_triangular(cholesky_factors, differences, upper=False)
    return -whitened.square().sum(dim=1).T
