"""CNAPs: the classifier adaptation network's head, meta-training on easy tasks, and bf16
autocast with the statistics of both CNAPs learners in float32."""

import pytest
import torch
from torch import nn

from litemeta.learners import build_learner
from litemeta.learners.statistics import class_means
from litemeta.lite import LitePass, LiteSettings

from .helpers import BACKBONE_SIZE, accuracy, meta_train

TINY_ENCODER = {"encoder_image_size": 32, "encoder_channels": 8}


@pytest.fixture(params=["cnaps", "simple_cnaps"])
def learner(request):
    torch.manual_seed(0)
    return build_learner(request.param, image_size=BACKBONE_SIZE, **TINY_ENCODER)


def test_meta_training_reaches_high_accuracy_and_adapts_the_backbone(learner, task):
    support, support_labels, query, query_labels = task

    def generated_film():
        with torch.no_grad():
            film = learner.adapt(support, support_labels).film
        return torch.cat([torch.cat([gamma - 1, beta]) for gamma, beta in film])

    untrained = generated_film()
    meta_train(learner, steps=10, h=5)
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        assert accuracy(classifier(query), query_labels) >= 0.9
    # the FiLM generators learned something: this task now gets other FiLM parameters
    assert (generated_film() - untrained).abs().max() > 1e-4
    assert not any(p.requires_grad for p in learner.backbone.parameters())  # frozen


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
            support, support_labels, lite=LitePass(LiteSettings(h=4), torch.Generator())
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
