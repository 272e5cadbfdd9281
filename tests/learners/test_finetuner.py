"""The fine-tuning baseline: a head (and optionally FiLM) trained on the support set."""

import torch

from litemeta.learners import build_learner

from .helpers import BACKBONE_SIZE, accuracy


def test_finetuner_trains_a_head_on_cached_features(task):
    support, support_labels, query, query_labels = task
    learner = build_learner("finetuner", image_size=BACKBONE_SIZE, steps=30, learning_rate=0.05)
    assert not learner.meta_trainable and learner.parameter_groups(1e-3) == []
    with torch.no_grad():  # adaptation enables gradients itself
        classifier = learner.adapt(support, support_labels)
        assert accuracy(classifier(query), query_labels) >= 0.9
    assert classifier.film is None and not classifier.weight.requires_grad


def test_finetuner_can_also_learn_film_per_task(task):
    support, support_labels, query, query_labels = task
    learner = build_learner("finetuner", image_size=BACKBONE_SIZE, steps=10, learn_film=True)
    classifier = learner.adapt(support, support_labels)
    assert any(not torch.equal(gamma, torch.ones_like(gamma)) for gamma, _ in classifier.film)
    assert not any(p.requires_grad for p in learner.backbone.parameters())
    with torch.no_grad():
        assert accuracy(classifier(query), query_labels) >= 0.9
