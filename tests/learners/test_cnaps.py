"""CNAPs and Simple CNAPs: FiLM generated from the support set, their classifiers, and a
few meta-training steps on easy tasks."""

import pytest
import torch

from litemeta.learners import build_learner
from litemeta.learners.statistics import class_means
from litemeta.lite import LiteSettings

from .helpers import BACKBONE_SIZE, accuracy, meta_train

TINY_ENCODER = {"encoder_image_size": 16, "encoder_channels": 8}


@pytest.fixture(params=["cnaps", "simple_cnaps"])
def learner(request):
    torch.manual_seed(0)
    return build_learner(request.param, image_size=BACKBONE_SIZE, **TINY_ENCODER)


def test_untrained_generators_give_identity_film_and_no_regularizer(learner, task):
    support, support_labels, *_ = task
    classifier = learner.adapt(support, support_labels)
    for (gamma, beta), (one, zero) in zip(
        classifier.film, learner.backbone.identity_film(), strict=True
    ):
        assert torch.equal(gamma, one) and torch.equal(beta, zero)
    assert classifier.regularizer.item() == 0.0


def test_meta_training_reaches_high_accuracy_and_adapts_the_backbone(learner, task):
    meta_train(learner, steps=3, h=5)
    support, support_labels, query, query_labels = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        assert accuracy(classifier(query), query_labels) >= 0.9
    generated = torch.cat([torch.cat([g - 1, b]) for g, b in classifier.film])
    assert generated.abs().max() > 0  # the FiLM generators learned something
    assert classifier.regularizer.item() == pytest.approx(
        1e-3 * generated.square().sum().item(), rel=1e-4
    )
    assert not any(p.requires_grad for p in learner.backbone.parameters())  # frozen


def test_film_differs_between_tasks(learner, task):
    meta_train(learner, steps=2, h=5)
    support, support_labels, *_ = task
    with torch.no_grad():
        first = learner.adapt(support, support_labels).film
        second = learner.adapt(255 - support, support_labels).film
    assert not torch.allclose(first[0][0], second[0][0])


def test_cnaps_head_starts_as_the_prototype_linear_form(task):
    torch.manual_seed(0)
    learner = build_learner("cnaps", image_size=BACKBONE_SIZE, **TINY_ENCODER)
    support, support_labels, *_ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        means = class_means(learner.backbone(support), support_labels, 3)
    torch.testing.assert_close(classifier.weight, 2 * means)
    torch.testing.assert_close(classifier.bias, -means.square().sum(dim=1))


def test_simple_cnaps_classifier_uses_the_blended_class_covariances(task):
    torch.manual_seed(0)
    learner = build_learner("simple_cnaps", image_size=BACKBONE_SIZE, **TINY_ENCODER)
    support, support_labels, *_ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        features = learner.backbone(support)
    q0 = classifier.cholesky_factors[0] @ classifier.cholesky_factors[0].T
    rows = features[support_labels == 0]
    expected = 0.8 * torch.cov(rows.T) + 0.2 * torch.cov(features.T) + torch.eye(rows.shape[1])
    torch.testing.assert_close(q0, expected, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_keeps_statistics_in_float32(learner, task, monkeypatch):
    """Under bf16 autocast the backbone runs in bf16, but means, covariances, the Cholesky
    factor and the triangular solves get float32 with autocast off; gradients flow."""
    seen = []
    cholesky, solve = torch.linalg.cholesky, torch.linalg.solve_triangular

    def recording(function):
        def wrapped(matrix, *args, **kwargs):
            seen.append((function.__name__, matrix.dtype, torch.is_autocast_enabled("cpu")))
            return function(matrix, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(torch.linalg, "cholesky", recording(cholesky))
    monkeypatch.setattr(torch.linalg, "solve_triangular", recording(solve))
    support, support_labels, query, query_labels = task
    learner.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        classifier = learner.adapt(
            support, support_labels, lite=LiteSettings(h=4, generator=torch.Generator())
        )
        assert learner.backbone(query[:2]).dtype == torch.bfloat16  # the forward is bf16
        logits = classifier(query)
    assert logits.dtype == torch.float32
    loss = torch.nn.functional.cross_entropy(logits, query_labels) + classifier.regularizer
    loss.backward()
    assert all(p.grad is not None for p in learner.film_generator.parameters())
    if learner.name == "simple_cnaps":
        assert {name for name, *_ in seen} == {"linalg_cholesky", "linalg_solve_triangular"}
        assert all(dtype == torch.float32 and not autocast for _, dtype, autocast in seen)
