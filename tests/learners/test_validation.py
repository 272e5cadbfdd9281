"""Bad input gets a clear error that says what to fix."""

import pytest
import torch

from litemeta.learners import build_learner

from .helpers import BACKBONE_SIZE


@pytest.fixture(scope="module")
def learner():
    return build_learner("protonets", image_size=BACKBONE_SIZE)


def test_a_class_without_support_images_is_refused(learner, task):
    support, labels, *_ = task
    labels = labels.clone()
    labels[labels == 1] = 2  # class 1 now has no images
    with pytest.raises(ValueError, match=r"classes \[1\] have no images"):
        learner.adapt(support, labels)


def test_negative_labels_are_refused(learner, task):
    support, labels, *_ = task
    with pytest.raises(ValueError, match=r"must lie in 0..way-1, found -1"):
        learner.adapt(support, labels - 1)


def test_labels_must_be_integer_class_indices_one_per_image(learner, task):
    support, labels, *_ = task
    with pytest.raises(ValueError, match="must be int64"):
        learner.adapt(support, labels.float())
    with pytest.raises(ValueError, match="one label per image"):
        learner.adapt(support, labels[:-1])


@pytest.mark.parametrize(
    "reshape",
    [
        lambda q: q[:, :1],  # grayscale queries for an RGB support set
        lambda q: torch.nn.functional.interpolate(q.float(), size=16).to(torch.uint8),
    ],
    ids=["channels", "size"],
)
def test_queries_must_match_the_support_images(learner, task, reshape):
    support, labels, query, _ = task
    classifier = learner.adapt(support, labels)
    with pytest.raises(ValueError, match=r"query images must have the support images'"):
        classifier(reshape(query))


def test_unknown_learner_and_backbone_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown learner 'maml'.*protonets"):
        build_learner("maml")
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'.*efficientnet_lite0.*timm:"):
        build_learner("protonets", backbone="vgg")
