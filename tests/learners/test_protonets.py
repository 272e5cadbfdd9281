"""ProtoNets: prototypes classify an easy task; backbone or FiLM-only meta-training."""

import pytest
import torch

from litemeta.checkpoint import ModelMismatchError
from litemeta.learners import ProtoNets, build_learner
from litemeta.learners.statistics import class_means

from .helpers import BACKBONE_SIZE, accuracy, meta_train


def test_protonets_classify_an_easy_task(task):
    support, support_labels, query, query_labels = task
    learner = build_learner("protonets", image_size=BACKBONE_SIZE).eval()
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        assert accuracy(classifier(query), query_labels) >= 0.9
        features = learner.backbone(support)
        torch.testing.assert_close(classifier.prototypes, class_means(features, support_labels, 3))


def test_meta_training_the_backbone_uses_a_lower_rate_for_a_pretrained_one():
    pretrained = build_learner("protonets", image_size=BACKBONE_SIZE)
    groups = pretrained.parameter_groups(1e-3)
    assert [group["lr"] for group in groups] == [1e-4]
    assert sum(len(g["params"]) for g in groups) == len(list(pretrained.backbone.parameters()))
    random = build_learner("protonets", image_size=BACKBONE_SIZE, pretrained=False)
    assert [group["lr"] for group in random.parameter_groups(1e-3)] == [1e-3]


def test_film_only_meta_training_learns_shared_film_and_leaves_the_backbone(task):
    learner = build_learner("protonets", image_size=BACKBONE_SIZE, meta_train="film")
    assert isinstance(learner, ProtoNets)
    trainable = [p for p in learner.parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(learner.backbone.film_layers)
    assert not any(p.requires_grad for p in learner.backbone.parameters())
    before = [p.detach().clone() for p in learner.backbone.parameters()]
    losses = meta_train(learner, steps=3, h=5, lr=1e-2)
    assert all(
        torch.equal(a, b) for a, b in zip(before, learner.backbone.parameters(), strict=True)
    )
    assert any(not torch.equal(g, torch.ones_like(g)) for g in learner.film_gammas)
    assert all(torch.isfinite(torch.tensor(losses)))
    support, support_labels, query, query_labels = task
    with torch.no_grad():
        assert accuracy(learner.adapt(support, support_labels)(query), query_labels) >= 0.9


def test_distance_scale_multiplies_logits_and_is_meta_learned(task):
    support, support_labels, query, _ = task
    plain = build_learner("protonets", image_size=BACKBONE_SIZE, pretrained=False).eval()
    scaled = build_learner(
        "protonets", image_size=BACKBONE_SIZE, pretrained=False, distance_scale=0.01
    ).eval()
    scaled.backbone.load_state_dict(plain.backbone.state_dict())
    plain_logits = plain.adapt(support, support_labels)(query)
    scaled_logits = scaled.adapt(support, support_labels)(query)
    torch.testing.assert_close(scaled_logits, plain_logits * 0.01)
    assert torch.equal(scaled_logits.argmax(1), plain_logits.argmax(1))
    head = [g for g in scaled.parameter_groups(1e-3) if g["name"] == "head"]
    assert head and head[0]["params"] == [scaled.log_distance_scale]
    scaled_logits.logsumexp(1).sum().backward()
    assert scaled.log_distance_scale.grad is not None and scaled.log_distance_scale.grad != 0


def test_protonets_film_saved_for_other_film_layers_is_refused_naming_the_placement():
    torch.manual_seed(0)
    learner = build_learner(
        "protonets", "resnet18", image_size=32, pretrained=False, meta_train="film"
    )
    state = learner.state_dict()
    for key in ("film_gammas.15", "film_betas.15"):  # as if saved for 15 layers
        del state[key]
    with pytest.raises(ModelMismatchError, match=r"saved for 15 FiLM layers.*has 16"):
        learner.load_state_dict(state)
    learner.load_state_dict(learner.state_dict())
