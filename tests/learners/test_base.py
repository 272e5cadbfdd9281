"""The learner interface's defaults: one parameter group of what trains, a classifier with no
regulariser and no task parameters, and the cost of adapting counted by hand."""

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


def test_a_classifier_starts_without_regulariser_or_task_parameters():
    class Constant(TaskClassifier):
        def __call__(self, query_images):
            return torch.zeros(len(query_images), 2)

    classifier = Constant()
    assert classifier.regularizer.shape == () and float(classifier.regularizer) == 0.0
    assert classifier.task_parameters() == {}


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
