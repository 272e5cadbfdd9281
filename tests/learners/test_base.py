"""The learner interface's defaults: one parameter group of what trains, a classifier with no
regulariser and no task parameters, and the cost of adapting counted by hand."""

import pytest
import torch
from train_helpers import SyntheticTasks, TinyProtoNet

from litemeta.learners.base import FewShotLearner, TaskClassifier


def test_the_default_parameter_group_holds_only_what_trains():
    learner = TinyProtoNet()
    assert isinstance(learner, FewShotLearner) and learner.meta_trainable
    learner.network[1].requires_grad_(False)
    [group] = learner.parameter_groups(0.25)
    assert group["lr"] == 0.25
    assert [id(p) for p in group["params"]] == [id(p) for p in learner.network[3].parameters()]


class _Summing(TaskClassifier):
    """Features: each image's pixel sum; logits: the feature and twice its negative."""

    def embed(self, images):
        return images.flatten(1).sum(1, keepdim=True)

    def logits(self, features):
        return torch.cat([features, -2 * features], dim=1)


def test_a_classifier_starts_without_regulariser_or_task_parameters():
    classifier = _Summing()
    assert classifier.regularizer.shape == () and float(classifier.regularizer) == 0.0
    assert classifier.task_parameters() == {}


def test_calling_a_classifier_embeds_pools_clips_then_scores():
    images = torch.arange(4 * 3, dtype=torch.float32).reshape(4, 3, 1, 1)
    sums = [3.0, 12.0, 21.0, 30.0]  # 0+1+2, 3+4+5, ...
    classifier = _Summing()
    assert classifier(images).tolist() == [[s, -2 * s] for s in sums]
    clips = torch.tensor([[0, 3], [1, 2], [2, 2]])
    pooled = classifier(images, clips)  # (3 + 30) / 2, (12 + 21) / 2, 21
    assert pooled.tolist() == [[16.5, -33.0], [16.5, -33.0], [21.0, -42.0]]


def test_a_classifier_without_an_export_form_says_what_to_add():
    for export in (_Summing().export_embedding, _Summing().export_head):
        with pytest.raises(NotImplementedError, match="_Summing cannot be exported: give it"):
            export()


def test_adaptation_cost_counts_the_support_embedding_by_hand():
    """TinyProtoNet embeds each 3x6x6 image with Linear(108, 8), Tanh, Linear(8, 8): 2 FLOPs
    per multiply-accumulate, 108 * 8 + 8 * 8 of them per image."""
    task = SyntheticTasks(way=3, shot=4)(0)
    cost = TinyProtoNet().adaptation_cost(task.support_images, task.support_labels)
    assert cost.support_size == 12
    assert cost.flops == 2 * 12 * (108 * 8 + 8 * 8)
    assert cost.macs == 12 * (108 * 8 + 8 * 8)
    assert cost.task_parameters == 0  # its classifier reports none
    assert cost.as_dict() == {
        "seconds": cost.seconds,
        "flops": cost.flops,
        "task_parameters": 0,
        "support_size": 12,
        "macs": cost.macs,
    }
