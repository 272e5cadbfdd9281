"""The task classifiers on backbone features, each against a loop over queries and classes in
float64 numpy: prototypes, a linear head, Mahalanobis distance; their task parameters."""

import copy

import numpy as np
import pytest
import torch

from litemeta.learners.classifiers import (
    LinearClassifier,
    MahalanobisClassifier,
    PrototypeClassifier,
)

from .helpers import tiny_backbone

WAY, DIM = 3, 6  # TinyCNN has 6 features


@pytest.fixture
def setting():
    """A tiny backbone, query images and their features in float64."""
    torch.manual_seed(0)
    backbone = tiny_backbone().eval()
    queries = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        features = backbone(queries).double().numpy()
    return backbone, queries, features


def test_prototype_logits_are_scaled_negative_squared_distances(setting):
    backbone, queries, features = setting
    prototypes = torch.randn(WAY, DIM)
    plain = PrototypeClassifier(backbone, queries.shape[1:], prototypes)
    scaled = PrototypeClassifier(
        backbone, queries.shape[1:], prototypes, distance_scale=torch.tensor(0.25)
    )
    expected = np.array(
        [[-sum((f - p) ** 2) for p in prototypes.double().numpy()] for f in features]
    )
    with torch.no_grad():
        np.testing.assert_allclose(plain(queries).numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scaled(queries).numpy(), 0.25 * expected, rtol=1e-5, atol=1e-5)
    assert plain.task_parameters() == {"prototypes": prototypes}
    assert float(plain.regularizer) == 0.0


def test_linear_logits_are_dot_products_plus_bias(setting):
    backbone, queries, features = setting
    weight, bias = torch.randn(WAY, DIM), torch.randn(WAY)
    film = backbone.identity_film()
    classifier = LinearClassifier(backbone, queries.shape[1:], weight, bias, film, task_film=True)
    w, b = weight.double().numpy(), bias.double().numpy()
    expected = np.array([[f @ w[k] + b[k] for k in range(WAY)] for f in features])
    with torch.no_grad():
        np.testing.assert_allclose(classifier(queries).numpy(), expected, rtol=1e-5, atol=1e-5)
    parameters = classifier.task_parameters()
    assert set(parameters) == {"film", "weight", "bias"}
    film_size = 2 * sum(layer.channels for layer in backbone.film_layers)
    assert parameters["film"].shape == (film_size,)
    shared = LinearClassifier(backbone, queries.shape[1:], weight, bias, film, task_film=False)
    assert set(shared.task_parameters()) == {"weight", "bias"}  # shared FiLM is not learned


def test_mahalanobis_logits_use_each_class_covariance(setting):
    backbone, queries, features = setting
    generator = torch.Generator().manual_seed(1)
    means = torch.randn(WAY, DIM, generator=generator)
    factors = torch.randn(WAY, DIM, DIM, generator=generator)
    covariances = factors @ factors.transpose(1, 2) + torch.eye(DIM)
    classifier = MahalanobisClassifier(backbone, queries.shape[1:], means, covariances)
    inverses = [np.linalg.inv(c) for c in covariances.double().numpy()]
    mu = means.double().numpy()
    expected = np.array(
        [[-(f - mu[k]) @ inverses[k] @ (f - mu[k]) for k in range(WAY)] for f in features]
    )
    with torch.no_grad():
        np.testing.assert_allclose(classifier(queries).numpy(), expected, rtol=1e-4, atol=1e-4)
    lower = classifier.task_parameters()["cholesky_factors"]
    torch.testing.assert_close((lower @ lower.transpose(1, 2)).float(), covariances)


def test_mahalanobis_logits_of_ill_conditioned_covariances_are_float64_accurate(setting):
    """Simple CNAPs' Q_k = (spread of features of scale 30) + I: eigenvalues from ~10^5 down
    to 1. Given the float32 means and covariances (no gradient), the logits agree with
    numpy's float64 arithmetic to float32 rounding; a float32 factor and solve here miss by
    ~10^-4 relative."""
    backbone, queries, _ = setting
    generator = torch.Generator().manual_seed(3)
    dim = 256
    spread = torch.randn(WAY, 8, dim, generator=generator) * 30
    covariances = (spread.transpose(1, 2) @ spread / 7 + torch.eye(dim)).float()
    means = torch.randn(WAY, dim, generator=generator) * 30
    features = means[0] + torch.randn(4, dim, generator=generator) * 30
    classifier = MahalanobisClassifier(backbone, queries.shape[1:], means, covariances)
    mu, q = means.double().numpy(), features.double().numpy()
    inverses = [np.linalg.inv(c) for c in covariances.double().numpy()]
    expected = np.array([[-(f - mu[k]) @ inverses[k] @ (f - mu[k]) for k in range(WAY)] for f in q])
    logits = classifier.logits(features)
    assert logits.dtype == torch.float32
    trained = MahalanobisClassifier(
        backbone, queries.shape[1:], means, covariances.requires_grad_()
    )
    assert trained.cholesky_factors.dtype == torch.float32  # meta-training: float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits.double().numpy(), expected, rtol=0, atol=1e-6 * scale)


def test_half_precision_features_are_scored_in_float32(setting):
    backbone, queries, features = setting
    prototypes = torch.randn(WAY, DIM)
    classifier = PrototypeClassifier(backbone, queries.shape[1:], prototypes)
    half = torch.from_numpy(features).to(torch.bfloat16)
    logits = classifier.classify(half)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, classifier.logits(half.float()))


def test_queries_must_look_like_the_support_images(setting):
    backbone, queries, _ = setting
    classifier = PrototypeClassifier(backbone, queries.shape[1:], torch.zeros(WAY, DIM))
    with pytest.raises(
        ValueError, match=r"\[channels, height, width\] \(3, 8, 8\), got \(3, 9, 9\)"
    ):
        classifier(torch.zeros(2, 3, 9, 9, dtype=torch.uint8))


def _each_classifier(backbone, shape):
    """One classifier of each kind on random task tensors, the FiLM parameters not the
    identity (so that an export form that dropped them would differ)."""
    generator = torch.Generator().manual_seed(5)
    film = [
        (
            1 + 0.3 * torch.randn(g.shape, generator=generator),
            0.3 * torch.randn(b.shape, generator=generator),
        )
        for g, b in backbone.identity_film()
    ]
    means = torch.randn(WAY, DIM, generator=generator)
    spread = torch.randn(WAY, DIM, DIM, generator=generator)
    return [
        PrototypeClassifier(backbone, shape, means, film, distance_scale=torch.tensor(0.3)),
        LinearClassifier(
            backbone, shape, torch.randn(WAY, DIM, generator=generator), means[0, :WAY], film
        ),
        MahalanobisClassifier(
            backbone, shape, means, spread @ spread.transpose(1, 2) + torch.eye(DIM), film
        ),
    ]


def test_each_export_form_computes_what_the_classifier_does(setting):
    """The export form, the modules ONNX export traces, against the classifier itself."""
    backbone, queries, _ = setting
    for classifier in _each_classifier(backbone, queries.shape[1:]):
        embedding, head = classifier.export_embedding(), classifier.export_head()
        with torch.no_grad():
            features = classifier.embed(queries)
            torch.testing.assert_close(embedding(queries), features)
            torch.testing.assert_close(
                head(features), classifier.logits(features), rtol=1e-4, atol=1e-4
            )
        assert embedding.backbone is not backbone  # a copy, which export may move and trace
        assert not any(p.requires_grad for p in [*embedding.parameters(), *head.parameters()])
        assert all(b.dtype == torch.float32 for b in head.buffers())


def test_leave_one_out_logits_rebuild_the_head_without_the_example(setting):
    backbone, queries, features = setting
    labels = torch.tensor([0, 1, 2, 0, 1])
    features = torch.from_numpy(features).float()
    others = torch.tensor([1, 2, 3, 4])  # without row 0
    prototypes, linear, mahalanobis = _each_classifier(backbone, queries.shape[1:])
    means = torch.stack([features[others][labels[others] == k].mean(0) for k in range(WAY)])
    by_hand = PrototypeClassifier(
        backbone, queries.shape[1:], means, distance_scale=torch.tensor(0.3)
    )
    torch.testing.assert_close(
        prototypes.logits_without(features, labels, WAY, 0), by_hand.logits(features[:1])
    )
    with pytest.raises(ValueError, match="trained on every support example"):
        linear.logits_without(features, labels, WAY, 0)
    mahalanobis_by_hand = copy.copy(mahalanobis)
    mahalanobis_by_hand.means = means
    torch.testing.assert_close(
        mahalanobis.logits_without(features, labels, WAY, 0).float(),
        mahalanobis_by_hand.logits(features[:1]),
    )
