"""ORBIT through the experiment layer: tasks cycle over users and evaluation reports the
video metrics."""

from litemeta.evaluation import evaluate
from litemeta.experiment import DataConfig, build_model, load_experiment, task_dataset

from .test_orbit import write_orbit


def test_orbit_tasks_cycle_over_users_and_get_video_metrics(tmp_path):
    root = write_orbit(tmp_path, split="test")
    data = DataConfig(dataset="orbit", root=str(root), orbit_min_target_frames=4)
    tasks = task_dataset(data, "test", num_tasks=4, image_size=16, seed=0)
    assert len(tasks) == 4
    way = [task.way for task in tasks]
    assert way == [2, 1, 2, 1]  # P100 (keys, mug), P200 (wallet), P100, P200
    assert all(task.query_groups is not None for task in tasks)

    model = load_experiment(
        "default", ["model.backbone=resnet18", "model.pretrained=false", "model.image_size=16"]
    ).model
    result = evaluate(build_model(model), tasks, progress=False)
    assert result.orbit is not None
    assert len(result.orbit.per_user) == 4
