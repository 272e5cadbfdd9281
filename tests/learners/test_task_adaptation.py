"""CNAPs-style task adaptation: the set encoder, the FiLM generator and its regulariser."""

import pytest
import torch

from litemeta.learners import build_learner

from .helpers import BACKBONE_SIZE, meta_train

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


def test_film_differs_between_tasks(learner, task):
    meta_train(learner, steps=2, h=5)
    support, support_labels, *_ = task
    with torch.no_grad():
        first = learner.adapt(support, support_labels).film
        second = learner.adapt(255 - support, support_labels).film
    assert not torch.allclose(first[0][0], second[0][0])
