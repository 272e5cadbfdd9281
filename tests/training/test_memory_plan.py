"""training.lite.h: auto picks the largest h that fits a memory budget, and a real step at
that h, metered, fills the budget to within 15% without passing it."""

import pytest
import torch
import yaml
from cli_helpers import TINY_OVERRIDES
from train_helpers import SyntheticTasks, TinyProtoNet

from litemeta.config import ConfigError
from litemeta.device import place_on_device
from litemeta.experiment import load_experiment
from litemeta.experiment.jobs import train_experiment
from litemeta.learners import build_learner
from litemeta.tasks import Task
from litemeta.training import TrainingConfig, train
from litemeta.training.memory_cost import Line, ModelCost, measure_cost, task_image_bytes
from litemeta.training.memory_plan import (
    GIB,
    BudgetTooSmall,
    check_plan,
    plan_evaluation,
    plan_training,
)

MIB = 2**20


def _cost(**changes) -> ModelCost:
    values = {
        "parameter_bytes": 100 * MIB,
        "trainable_bytes": 10 * MIB,
        "saved": Line(5 * MIB, 3 * MIB),
        "working": Line(0.0, 1 * MIB),
        "precision": "fp32",
        "image_size": 84,
        "way": 5,
    }
    return ModelCost(**{**values, **changes})


def test_the_plan_is_the_largest_h_under_the_budget_by_hand():
    # fixed: 100 + 3 x 10 (gradients, two Adam moments) + 5 saved + 2 task = 137 MiB;
    # 4 MiB per image: (1000 - 137) / 4 = 215.75 -> h = 215, peak 137 + 860 = 997 MiB.
    plan = plan_training(_cost(), 1000 * MIB, query_batch_size=32, task_bytes=2 * MIB)
    assert (plan.h, plan.chunk_size, plan.query_batch_size) == (215, 215, 32)
    assert plan.peak_bytes == 997 * MIB
    assert "lite.h=215" in plan.describe() and "one more image would not fit" in plan.describe()
    # The last query batch also holds the h rows: h + 32 images, (863 / 4) - 32 = 183.
    fused = plan_training(
        _cost(), 1000 * MIB, query_batch_size=32, task_bytes=2 * MIB, rows_with_queries=True
    )
    assert fused.h == 183
    # A query batch is never larger than h.
    assert plan_training(_cost(), 150 * MIB, query_batch_size=32).query_batch_size == 3


def test_a_support_set_of_at_most_h_images_is_planned_as_full_back_propagation():
    # With N = 200 < 215, h = N back-propagates all 200 with a query batch of 32: 232 images
    # (137 + 928 MiB) do not fit, so h stays below N: h = 199, which fits as LITE.
    plan = plan_training(
        _cost(), 1000 * MIB, query_batch_size=32, task_bytes=2 * MIB, support_size=200
    )
    assert plan.h == 199
    # N = 150: 150 + 32 images (137 + 728 MiB) fit, so every support image is used.
    small = plan_training(
        _cost(), 1000 * MIB, query_batch_size=32, task_bytes=2 * MIB, support_size=150
    )
    assert (small.h, small.peak_bytes) == (150, 865 * MIB)


def test_a_budget_too_small_for_h_1_names_the_smallest_that_works():
    # h = 1 needs 135 + 4 = 139 MiB = 0.1357... GiB -> "0.14 GiB".
    with pytest.raises(BudgetTooSmall, match=r"needs at least 0\.14 GiB"):
        plan_training(_cost(), 138 * MIB, query_batch_size=8)
    assert plan_training(_cost(), 139 * MIB, query_batch_size=8).h == 1


def test_evaluation_chunk_fits_without_gradients_or_optimiser_state():
    # 100 MiB of parameters + 1 MiB per image in flight: (612 - 100) / 1 = 512 images.
    plan = plan_evaluation(_cost(), 612 * MIB, query_batch_size=64)
    assert plan.chunk_size == 512
    with pytest.raises(BudgetTooSmall, match="query batches of 600"):
        plan_evaluation(_cost(), 612 * MIB, query_batch_size=600)


@pytest.mark.parametrize(
    ("learner_name", "unknown"), [("protonets", 0), ("simple_cnaps", 0), ("simple_cnaps", 30)]
)
def test_the_chosen_h_fits_the_budget_by_the_meter(learner_name, unknown):
    """The plan extrapolates two probe steps (1 and 2 images); a real step at the chosen h,
    counted by the saved-tensor meter, the layer hooks and the optimiser's state, stays
    within the budget and leaves at most 15% of it unused; also with open-set
    meta-training's unknown images, which pass in query batches."""
    torch.manual_seed(0)
    learner = build_learner(learner_name, "resnet18", 32, pretrained=False)
    learner = place_on_device(learner, torch.device("cpu"))
    cost = measure_cost(learner, image_size=32, way=10)
    budget = int(0.3 * GIB)
    first = plan_training(cost, budget, query_batch_size=10)
    shots = first.h // 10 + 1  # more support images than h: LITE, not full back-propagation
    task = Task(
        support_images=torch.randint(0, 256, (10 * shots, 3, 32, 32), dtype=torch.uint8),
        support_labels=torch.arange(10).repeat_interleave(shots),
        query_images=torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8),
        query_labels=torch.arange(10).repeat_interleave(2),
        class_names=[str(c) for c in range(10)],
        unknown_images=torch.randint(0, 256, (unknown, 3, 32, 32), dtype=torch.uint8)
        if unknown
        else None,
    )
    assert task_image_bytes(task) == 3 * 32 * 32 * (10 * shots + 20 + unknown)
    plan = plan_training(
        cost,
        budget,
        query_batch_size=10,
        task_bytes=task_image_bytes(task),
        support_size=10 * shots,
    )
    assert 10 <= plan.h < 10 * shots
    measured = check_plan(learner, plan, task, open_set_weight=1.0 if unknown else 0.0)
    assert 0.85 * budget <= measured.accounted_bytes <= budget
    # The extrapolated saved bytes agree with the meter at h to within 5%.
    assert measured.saved_bytes == pytest.approx(cost.saved(plan.h), rel=0.05)
    assert measured.state_bytes == pytest.approx(cost.training_state_bytes, rel=1e-4)


def test_training_with_h_auto_logs_the_plan_and_saves_the_number(tmp_path, capsys):
    config = TrainingConfig.from_dict(
        {
            "steps": 2,
            "tasks_per_step": 1,
            "query_batch_size": 4,
            "validate_every": 0,
            "output_dir": str(tmp_path / "run"),
            "lite": {"h": "auto"},
            "memory_budget": 0.0001,  # about 105 KB: a few dozen images of the tiny model
        }
    )
    train(config, TinyProtoNet(), SyntheticTasks(shot=40), progress=False)
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("memory plan: lite.h=")
    assert (tmp_path / "run" / "run.log").read_text() == line + "\n"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert isinstance(saved["lite"]["h"], int) and f"lite.h={saved['lite']['h']}," in line
    assert saved["lite"]["h"] > 4


def test_a_budget_too_small_is_refused_before_training(tmp_path):
    config = TrainingConfig.from_dict(
        {"output_dir": str(tmp_path / "run"), "lite": {"h": "auto"}, "memory_budget": 1e-7}
    )
    with pytest.raises(BudgetTooSmall, match=r"h = 1 .* needs at least"):
        train(config, TinyProtoNet(), SyntheticTasks(), progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_h_auto_and_the_budget_are_checked_settings():
    assert TrainingConfig().apply_overrides(["lite.h=auto"]).lite.h == "auto"
    with pytest.raises(ConfigError, match="memory_budget"):
        TrainingConfig(memory_budget=-1.0)
    with pytest.raises(ConfigError, match=r"lite\.h"):
        TrainingConfig().apply_overrides(["lite.h=automatic"])


@pytest.mark.slow
def test_the_experiment_plans_training_and_evaluation_chunks(tmp_path, capsys):
    overrides = [
        *TINY_OVERRIDES,
        "training.lite.h=auto",
        "training.memory_budget=0.25",
        "evaluation.chunk_size=auto",
        f"training.output_dir={tmp_path / 'run'}",
    ]
    train_experiment(load_experiment("default", overrides), compare_baseline=False)
    printed = capsys.readouterr().out
    assert "memory plan: lite.h=" in printed
    assert "evaluation plan: chunk_size=" in printed
    assert (tmp_path / "run" / "run.log").read_text().startswith("memory plan: lite.h=")
