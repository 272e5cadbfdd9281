"""CNAPs and Simple CNAPs: FiLM generated from the support set, their classifiers, and a
few meta-training steps on easy tasks."""

import pytest
import torch
from torch import nn

from litemeta.learners import build_learner
from litemeta.learners.statistics import class_means
from litemeta.lite import LiteSettings

from .helpers import BACKBONE_SIZE, accuracy, meta_train

TINY_ENCODER = {"encoder_image_size": 32, "encoder_channels": 8}


@pytest.fixture(params=["cnaps", "simple_cnaps"])
def learner(request):
    torch.manual_seed(0)
    return build_learner(request.param, image_size=BACKBONE_SIZE, **TINY_ENCODER)


def test_untrained_generators_give_near_identity_film_and_the_regularizer_on_the_scales(
    learner, task
):
    """LITE's generators: gamma = 1 + r_gamma * g(z), beta = r_beta * h(z), with regulariser
    vectors r drawn from N(0, 1e-3^2); the loss term is 1e-3 * sum r^2 (LITE's run.py)."""
    support, support_labels, *_ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        embedding = learner.set_encoder(support).mean(dim=0)
    generator = learner.film_generator
    for index, (gamma, beta) in enumerate(classifier.film):
        g = generator.gamma_generators[index](embedding)
        h = generator.beta_generators[index](embedding)
        torch.testing.assert_close(gamma, 1 + g * generator.gamma_regularizers[index])
        torch.testing.assert_close(beta, h * generator.beta_regularizers[index])
        assert (gamma - 1).abs().max() < 0.05 and beta.abs().max() < 0.05
    scales = torch.cat([*generator.gamma_regularizers, *generator.beta_regularizers])
    assert 0.5e-3 < scales.std().item() < 2e-3
    assert classifier.regularizer.item() == pytest.approx(1e-3 * scales.square().sum().item())


def test_meta_training_reaches_high_accuracy_and_adapts_the_backbone(learner, task):
    support, support_labels, query, query_labels = task

    def generated_film():
        with torch.no_grad():
            film = learner.adapt(support, support_labels).film
        return torch.cat([torch.cat([gamma - 1, beta]) for gamma, beta in film])

    untrained = generated_film()
    meta_train(learner, steps=3, h=5)
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        assert accuracy(classifier(query), query_labels) >= 0.9
    # the FiLM generators learned something: this task now gets other FiLM parameters
    assert (generated_film() - untrained).abs().max() > 1e-4
    assert not any(p.requires_grad for p in learner.backbone.parameters())  # frozen


def test_film_differs_between_tasks(learner, task):
    meta_train(learner, steps=2, h=5)
    support, support_labels, *_ = task
    with torch.no_grad():
        first = learner.adapt(support, support_labels).film
        second = learner.adapt(255 - support, support_labels).film
    assert not torch.allclose(first[0][0], second[0][0])


def test_cnaps_head_is_the_published_classifier_adaptation_network(task):
    """CNAPs' adaptation_networks.py: w_k = mu_k + f(mu_k), b_k = g(mu_k), f and g
    separate 3-layer ELU networks (f: d -> d -> d -> d, g: d -> 1 -> 1 -> 1)."""
    torch.manual_seed(0)
    learner = build_learner("cnaps", image_size=BACKBONE_SIZE, **TINY_ENCODER)
    support, support_labels, *_ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        means = class_means(learner.backbone(support, classifier.film), support_labels, 3)

        def three_layers(network, x):
            first, second, third = (m for m in network.modules() if isinstance(m, nn.Linear))
            elu = nn.functional.elu
            return third(elu(second(elu(first(x)))))

        adaptation = learner.classifier_adaptation
        bias_layers = [m for m in adaptation.bias_network.modules() if isinstance(m, nn.Linear)]
        shapes = [tuple(layer.weight.shape) for layer in bias_layers]
        assert shapes == [(1, means.shape[1]), (1, 1), (1, 1)]
        weight = means + three_layers(adaptation.weight_network, means)
        bias = three_layers(adaptation.bias_network, means).squeeze(1)
    torch.testing.assert_close(classifier.weight, weight)
    torch.testing.assert_close(classifier.bias, bias)


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
