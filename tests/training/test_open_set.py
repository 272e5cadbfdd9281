"""Open-set meta-training (PEELER, Liu et al., CVPR 2020): the unknown queries' term against
the loss written out by hand in float64, and, with it off, the gradients of before."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from train_helpers import SyntheticTasks, TinyProtoNet

from litemeta.config import ConfigError
from litemeta.experiment.builders import with_unknown_classes
from litemeta.lite import LiteSettings
from litemeta.tasks import Task
from litemeta.training import TrainingConfig
from litemeta.training.objective import negative_entropy_sum
from litemeta.training.step import TaskStep

TASKS_PER_STEP = 2
WEIGHT = 0.7


def _learner() -> TinyProtoNet:
    torch.manual_seed(0)
    return TinyProtoNet().double()


def _task(unknown: int | None = 7) -> Task:
    task = SyntheticTasks(seed=2)(0)
    task.support_images = task.support_images.double()
    task.query_images = task.query_images.double()
    if unknown is not None:
        generator = torch.Generator().manual_seed(9)
        task.unknown_images = torch.rand(unknown, 3, 6, 6, generator=generator).double()
    return task


def _gradients(learner: TinyProtoNet) -> list[torch.Tensor]:
    gradients = [parameter.grad.clone() for parameter in learner.parameters()]
    learner.zero_grad(set_to_none=True)
    return gradients


def _step(lite: LiteSettings, weight: float, batch: int = 4) -> TaskStep:
    return TaskStep.of(
        lite, query_batch_size=batch, tasks_per_step=TASKS_PER_STEP, open_set_weight=weight
    )


def test_negative_entropy_sum_by_hand():
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]], dtype=torch.float64)
    p = torch.tensor(2.0).exp() / (torch.tensor(2.0).exp() + torch.tensor(-1.0).exp())
    expected = 2 * 0.5 * torch.tensor(0.5).log() + p * p.log() + (1 - p) * (1 - p).log()
    torch.testing.assert_close(negative_entropy_sum(logits), expected.double())


@pytest.mark.parametrize(
    "lite",
    [LiteSettings(h=None), LiteSettings(h=12), LiteSettings(h=12, rows_with_queries=True)],
    ids=["no-lite", "lite-h-N", "lite-rows-with-queries"],
)
def test_the_gradient_is_that_of_the_loss_by_hand(lite: LiteSettings):
    """(mean cross-entropy of the known queries + regulariser + weight x mean over unknown
    images of sum_k p_k log p_k) / tasks_per_step; with h = N LITE's estimate is exact."""
    learner, task = _learner(), _task()
    outcome = _step(lite, WEIGHT).queue(learner, task, torch.Generator().manual_seed(1)).read()
    got = _gradients(learner)

    classifier = learner.adapt(task.support_images, task.support_labels)
    cross_entropy = F.cross_entropy(classifier(task.query_images, None), task.query_labels)
    logits = classifier(task.unknown_images, None)
    probabilities = logits.exp() / logits.exp().sum(1, keepdim=True)
    open_term = (probabilities * probabilities.log()).sum(1).mean()
    loss = cross_entropy + classifier.regularizer + WEIGHT * open_term
    expected = torch.autograd.grad(loss / TASKS_PER_STEP, list(learner.parameters()))
    for mine, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
    assert outcome.loss == pytest.approx(loss.item(), rel=1e-6)  # summed in float32
    assert outcome.images == 12 + 15 + 7
    assert open_term.item() < 0


@pytest.mark.parametrize("lite", [LiteSettings(h=None), LiteSettings(h=5)], ids=["full", "lite"])
def test_off_gives_the_gradient_of_before_bit_for_bit(lite: LiteSettings):
    """Weight 0 ignores unknown images; without them any weight is the plain step."""
    learner = _learner()
    runs = []
    for weight, task in ((0.0, _task(None)), (0.0, _task()), (WEIGHT, _task(None))):
        outcome = _step(lite, weight).queue(learner, task, torch.Generator().manual_seed(1))
        runs.append((outcome.read(), _gradients(learner)))
    (plain, plain_gradients), *others = runs
    for outcome, gradients in others:
        assert outcome.loss == plain.loss and outcome.correct == plain.correct
        assert all(torch.equal(a, b) for a, b in zip(gradients, plain_gradients, strict=True))


def test_the_settings_default_off_and_are_checked():
    assert TrainingConfig().open_set.unknown_classes == 0
    with pytest.raises(ConfigError, match=r"open_set\.unknown_classes"):
        TrainingConfig.from_dict({"open_set": {"unknown_classes": -1}})
    with pytest.raises(ConfigError, match=r"open_set\.weight"):
        TrainingConfig.from_dict({"open_set": {"unknown_classes": 2, "weight": -0.5}})
    with pytest.raises(ConfigError, match="adapts again for every query batch"):
        TrainingConfig.from_dict(
            {"open_set": {"unknown_classes": 2}, "lite": {"h": 4, "objective": "lite_reference"}}
        )
    # h: auto plans with the unknown images counted (tests/training/test_memory_plan.py)
    TrainingConfig.from_dict({"open_set": {"unknown_classes": 2}, "lite": {"h": "auto"}}).validate()
    TrainingConfig.from_dict({"open_set": {"unknown_classes": 2}, "lite": {"h": 4}}).validate()
    tasks = [_task(None)]
    assert with_unknown_classes(tasks, 0) is tasks
    with pytest.raises(ConfigError, match="fixed-way episodes of one source"):
        with_unknown_classes(tasks, 2)


def test_the_step_refuses_unknown_images_with_an_adaptation_per_query_batch():
    lite = LiteSettings(h=4, objective="lite_reference")
    step = TaskStep.of(lite, query_batch_size=4, open_set_weight=WEIGHT)
    with pytest.raises(ValueError, match="one adaptation per task"):
        step.queue(_learner(), _task(), torch.Generator().manual_seed(1))
