"""How well a recogniser learnt: each taught example classified by a classifier adapted to
the others (leave-one-out), from features computed once: the classifier's head rebuilt
without it (:meth:`~litemeta.learners.base.TaskClassifier.logits_without`).

ProtoNets: the support features do not depend on the other examples (no task-specific
FiLM), so rebuilding the prototypes without the example is exactly adapting to the others.
CNAPs and Simple CNAPs: the FiLM parameters generated from the whole task are kept (adapting
again N times would pass the support set through the backbone N more times), so the
example's features were made with FiLM parameters that saw it. CNAPs' linear head is
generated again from the other examples' class means; Simple CNAPs' class means are taken
without the example but its covariances are kept (factorising a class covariance again
per example costs a d x d Cholesky factorisation each, d = 1280 for EfficientNet-Lite0).
Both estimates are slightly optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from litemeta.evaluation.trained import adapt_in_one_pass
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.classifiers import BackboneTaskClassifier
from litemeta.learners.statistics import class_means
from litemeta.precision import full_precision
from litemeta.serve.background import background_of
from litemeta.serve.calibration import Background, OpenSet, calibrate, open_set_scores

__all__ = [
    "HeldOut",
    "adapt_and_calibrate",
    "held_out_logits",
    "quality_report",
    "support_features",
]


@dataclass(frozen=True)
class HeldOut:
    """Leave-one-out logits ``[k, way]`` and open-set scores ``[k]`` of the ``k`` examples
    that can be left out (their class has another example), with their positions in the
    support set and classes."""

    logits: Tensor
    scores: Tensor
    rows: Tensor
    labels: Tensor


def support_features(classifier: BackboneTaskClassifier, images: Tensor) -> Tensor:
    """The support features the classifier was built from (embedding them again only for a
    learner that does not record them)."""
    if classifier.support_features is not None:
        return classifier.support_features
    return classifier.embed(images).float()


def held_out_logits(
    classifier: BackboneTaskClassifier, features: Tensor, labels: Tensor, background: Background
) -> HeldOut:
    """Each example's logits under the classifier head rebuilt without it
    (:meth:`~litemeta.learners.base.TaskClassifier.logits_without`), and its open-set score
    against the class means without it (less the ``background``), for the examples whose
    class has at least two (a class must keep one to be classified)."""
    way = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=way)
    rows = torch.nonzero(counts[labels] >= 2).flatten()
    logits, scores = [], []
    with torch.no_grad(), full_precision(features.device):
        for row in rows.tolist():
            logits.append(classifier.logits_without(features, labels, way, row))
            keep = torch.arange(labels.shape[0], device=labels.device) != row
            centres = class_means(features[keep], labels[keep], way)
            scores.append(open_set_scores(features[row : row + 1], centres, background))
    return HeldOut(
        torch.cat(logits).cpu() if logits else features.new_zeros(0, way).cpu(),
        torch.cat(scores).cpu() if scores else features.new_zeros(0).cpu(),
        rows.cpu(),
        labels[rows].cpu(),
    )


def quality_report(
    classes: list[str], example_ids: list[str], labels: list[int], held_out: HeldOut
) -> dict[str, object]:
    """The teach answer's ``quality``: leave-one-out accuracy per class, the confusion
    matrix (``confusion[i][j]``: examples of ``classes[i]`` taken for ``classes[j]``) and
    the examples taken for another class. A class with one example cannot be left out: its
    accuracy is None and its row stays zero."""
    way = len(classes)
    confusion = [[0] * way for _ in range(way)]
    confused = []
    rows, truths = held_out.rows.tolist(), held_out.labels.tolist()
    predicted = held_out.logits.argmax(-1).tolist()
    for row, label, guess in zip(rows, truths, predicted, strict=True):
        confusion[label][guess] += 1
        if guess != label:
            confused.append(
                {"example": example_ids[row], "label": classes[label], "looks_like": classes[guess]}
            )
    per_class = []
    for index, label in enumerate(classes):
        left_out = sum(confusion[index])
        correct = confusion[index][index]
        examples = labels.count(index)
        per_class.append(
            {
                "label": label,
                "examples": examples,
                "correct": correct,
                "accuracy": correct / left_out if left_out else None,
            }
        )
    return {"labels": classes, "per_class": per_class, "confusion": confusion, "confused": confused}


def adapt_and_calibrate(
    learner: BackboneLearner, images: Tensor, labels: Tensor
) -> tuple[BackboneTaskClassifier, OpenSet, HeldOut]:
    """Adapt to a support set in one pass, then calibrate "none of these" from its
    leave-one-out logits and the backbone's background (:mod:`litemeta.serve.background`);
    returns the classifier, the calibration, and the leave-one-out logits."""
    classifier = adapt_in_one_pass(learner, images, labels)
    if not isinstance(classifier, BackboneTaskClassifier):
        raise ValueError(f"cannot serve a {learner.name} learner's classifier")
    with torch.no_grad():
        features = support_features(classifier, images)
    labels = labels.to(features.device)
    background = background_of(learner.backbone)
    held_out = held_out_logits(classifier, features, labels, background)
    with full_precision(features.device):
        centres = class_means(features, labels, int(labels.max()) + 1).cpu()
    open_set = calibrate(held_out.logits, held_out.scores, held_out.labels, centres, background)
    return classifier, open_set, held_out
