"""Leave-one-out from features computed once equals adapting to the other examples, and the
quality report counts what a naive loop counts."""

from __future__ import annotations

import pytest
import torch

from litemeta.learners import build_learner
from litemeta.serve.background import background_of
from litemeta.serve.calibration import Background, open_set_scores
from litemeta.serve.quality import (
    HeldOut,
    adapt_and_calibrate,
    held_out_logits,
    quality_report,
)
from tests.learners.helpers import TINY_OPTIONS, colour_task

SIZE = 32


def _task():
    support, labels, _, _ = colour_task(way=3, shots=3, queries=1, seed=4)
    keep = torch.ones(labels.shape[0], dtype=torch.bool)
    keep[(labels == 2).nonzero()[1:]] = False  # class 2 keeps one example
    return support[keep], labels[keep]


@pytest.fixture(scope="module")
def protonets():
    torch.manual_seed(0)
    return build_learner("protonets", "resnet18", SIZE, pretrained=False, distance_scale=0.05)


def test_protonets_held_out_logits_are_adapting_to_the_others(protonets):
    support, labels = _task()
    with torch.no_grad():
        classifier = protonets.adapt(support, labels)
        assert torch.allclose(classifier.support_features, classifier.embed(support), atol=1e-5)
        dimensions = classifier.support_features.shape[1]
        directions = torch.linalg.qr(torch.randn(dimensions, 2)).Q.T
        background = Background(torch.randn(dimensions), directions)
        held_out = held_out_logits(classifier, classifier.support_features, labels, background)
        expected, scores = [], []
        for row in range(labels.shape[0]):
            if (labels == labels[row]).sum() < 2:
                continue
            keep = torch.arange(labels.shape[0]) != row
            others = protonets.adapt(support[keep], labels[keep])  # a full adaptation
            expected.append(others(support[row : row + 1])[0])
            features = others.embed(support)
            means = torch.stack([features[keep][labels[keep] == c].mean(0) for c in range(3)])
            scores.append(open_set_scores(features[row : row + 1], means, background)[0])
    assert held_out.rows.tolist() == [0, 1, 2, 3, 4, 5]  # not the one example of class 2
    assert held_out.labels.tolist() == labels[:6].tolist()
    assert torch.allclose(held_out.logits, torch.stack(expected), atol=1e-4)
    assert torch.allclose(held_out.scores, torch.stack(scores), atol=1e-5)


@pytest.mark.parametrize("name", ["cnaps", "simple_cnaps"])
def test_film_learners_keep_the_full_tasks_film_and_rebuild_the_head(name):
    torch.manual_seed(0)
    learner = build_learner(name, "resnet18", SIZE, pretrained=False, **TINY_OPTIONS[name]).eval()
    support, labels = _task()
    classifier, open_set, held_out = adapt_and_calibrate(learner, support, labels)
    with torch.no_grad():
        features = classifier.embed(support)  # with the full task's FiLM parameters
        assert torch.allclose(classifier.support_features, features, atol=1e-4)
        keep = torch.arange(labels.shape[0]) != 4
        head = learner.classifier(
            features[keep], labels[keep], 3, classifier.film, support.shape[1:]
        )
        if name == "simple_cnaps":  # the means without it, the covariances of all
            means = torch.stack([features[keep][labels[keep] == c].mean(0) for c in range(3)])
            whitened = torch.linalg.solve_triangular(
                classifier.cholesky_factors, (features[4] - means).unsqueeze(-1), upper=False
            )
            expected = -whitened.square().sum((1, 2))
        else:  # the linear head generated from the other examples
            film, shape = classifier.film, support.shape[1:]
            head = learner.classifier(features[keep], labels[keep], 3, film, shape)
            expected = head.logits(features[4:5])[0]
    assert torch.allclose(held_out.logits[4], expected, rtol=1e-4, atol=1e-3)
    assert held_out.logits.shape == (6, 3) and len(open_set.knots) == 6
    assert open_set.background is background_of(learner.backbone)


def test_the_quality_report_counts_like_a_naive_loop():
    classes = ["cat", "dog", "owl"]
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    labels = [0, 0, 0, 1, 1, 1, 2]
    # Held-out logits of the six examples that can be left out: b -> dog, e -> cat.
    logits = torch.tensor([[3.0, 1, 0], [0, 2, 1], [5, 1, 1], [0, 4, 0], [2, 1, 0], [0, 3, 2]])
    held_out = HeldOut(logits, torch.zeros(6), torch.arange(6), torch.tensor(labels[:6]))
    report = quality_report(classes, ids, labels, held_out)
    assert report["labels"] == classes
    assert report["confusion"] == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert report["per_class"] == [
        {"label": "cat", "examples": 3, "correct": 2, "accuracy": pytest.approx(2 / 3)},
        {"label": "dog", "examples": 3, "correct": 2, "accuracy": pytest.approx(2 / 3)},
        {"label": "owl", "examples": 1, "correct": 0, "accuracy": None},
    ]
    assert report["confused"] == [
        {"example": "b", "label": "cat", "looks_like": "dog"},
        {"example": "e", "label": "dog", "looks_like": "cat"},
    ]
