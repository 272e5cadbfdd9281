"""ORBIT through the experiment layer: tasks cycle over users, the training split gets the
training sampler, and evaluation pools the video metrics per user; a split that cannot make
the tasks is named."""

import pytest
import torch

from litemeta.data import OrbitTaskSampler
from litemeta.evaluation import evaluate
from litemeta.experiment import DataConfig, build_model, load_experiment, task_dataset
from tests.data.test_orbit import write_orbit


def test_orbit_tasks_cycle_over_users_and_get_video_metrics_per_user(tmp_path):
    root = write_orbit(tmp_path, split="test")
    orbit = OrbitTaskSampler(min_target_frames=4)
    data = DataConfig(dataset="orbit", root=str(root), sections={"orbit": orbit})
    tasks = task_dataset(data, "test", num_tasks=4, image_size=16, seed=0)
    assert len(tasks) == 4
    way = [task.way for task in tasks]
    assert way == [2, 1, 2, 1]  # P100 (keys, mug), P200 (wallet), P100, P200
    assert [tasks.user_of(i) for i in range(4)] == ["P100", "P200", "P100", "P200"]
    assert all(task.query_groups is not None for task in tasks)
    # all valid frames of every target video: 3 x 6 for P100, 6 for P200's eligible video
    assert [len(task.query_labels) for task in tasks] == [18, 6, 18, 6]

    model = load_experiment(
        "default", ["model.backbone=resnet18", "model.pretrained=false", "model.image_size=16"]
    ).model
    learner = build_model(model).eval()
    result = evaluate(learner, tasks, progress=False)
    assert result.orbit is not None
    assert result.orbit.users == ["P100", "P200"]
    assert result.orbit.over_users["frame_accuracy"].n == 2
    assert result.orbit.over_tasks["frame_accuracy"].n == 4

    # By hand: classify each frame on its own, score each video, pool per task and per user.
    task_accuracies, task_frame_accuracies, user_videos = [], [], {"P100": [], "P200": []}
    with torch.no_grad():
        for index, task in enumerate(tasks):
            classifier = learner.adapt(task.support_images, task.support_labels)
            predicted = [int(classifier(frame[None]).argmax()) for frame in task.query_images]
            right = [p == int(y) for p, y in zip(predicted, task.query_labels, strict=True)]
            task_accuracies.append(sum(right) / len(right))
            videos = [
                [r for r, g in zip(right, task.query_groups.tolist(), strict=True) if g == video]
                for video in dict.fromkeys(task.query_groups.tolist())
            ]
            video_accuracies = [sum(frames) / len(frames) for frames in videos]
            task_frame_accuracies.append(sum(video_accuracies) / len(video_accuracies))
            user_videos[tasks.user_of(index)] += video_accuracies
    assert result.task_accuracies == pytest.approx(task_accuracies)
    assert result.orbit.over_tasks["frame_accuracy"].mean == pytest.approx(
        sum(task_frame_accuracies) / 4
    )
    per_user = [sum(v) / len(v) for v in user_videos.values()]
    assert [u["frame_accuracy"] for u in result.orbit.per_user] == pytest.approx(per_user)


def test_orbit_options_reach_the_sampler(tmp_path):
    root = write_orbit(tmp_path, split="train")
    data = DataConfig(
        dataset="orbit",
        root=str(root),
        test_split="train",
        train_split="none",
        sections={
            "orbit": OrbitTaskSampler(
                min_target_frames=4,
                target_frames="sampled",
                context_clip_stride=2,
                max_context_clips=2,
                frame_cap=5,
            )
        },
    )
    tasks = task_dataset(data, "train", num_tasks=2, image_size=8, seed=0)
    sampler = tasks.by_user.sampler
    assert (sampler.mode, sampler.target_frames, sampler.frame_cap) == ("test", "sampled", 5)
    # frames 0 and 2 of each of the 5 clean videos of P100
    assert len(tasks[0].support_labels) == 5 * 2
    train = task_dataset(
        DataConfig(
            dataset="orbit",
            root=str(root),
            sections={"orbit": OrbitTaskSampler(min_target_frames=4, max_way=7, mode="test")},
        ),
        "train",
        num_tasks=2,
        image_size=8,
        seed=0,
    )
    assert (train.by_user.sampler.mode, train.by_user.sampler.max_way) == ("train", 7)


def test_shipped_orbit_config_evaluates_50_tasks_per_test_user():
    config = load_experiment("orbit")
    assert config.evaluation.tasks == 50 * 17  # ORBIT's test split has 17 users
    assert config.data.orbit.protocol == "dec-2022"
    assert config.data.orbit.resolved.target_frames == "sampled"
    paper = load_experiment("orbit", ["data.orbit.protocol=lite-2021"]).data.orbit.resolved
    assert (paper.clip_length, paper.target_frames) == (8, "all")
    with pytest.raises(Exception, match=r"orbit\.target_frames"):
        load_experiment("orbit", ["data.orbit.target_frames=some"])


def test_a_split_too_small_for_the_tasks_is_named(tmp_path):
    from PIL import Image

    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        for item in range(3):
            Image.new("RGB", (8, 8), (item, 0, 0)).save(tmp_path / name / f"{item}.png")
    (tmp_path / "splits.json").write_text('{"train": ["a", "b"], "test": ["c"]}')
    data = DataConfig(dataset="folders", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"the 'train' split of .*5-way tasks need at least 5"):
        task_dataset(data, "train", num_tasks=1, image_size=8, seed=0)


def test_vtab_other_than_its_test_split_says_to_evaluate_the_test_split(tmp_path):
    data = DataConfig(dataset="vtab", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"no 'train' split: .* evaluate its 'test' split"):
        task_dataset(data, "train", num_tasks=1, image_size=8, seed=0)


def test_a_records_folder_without_its_spec_is_not_read_as_class_folders(tmp_path):
    (tmp_path / "0.tfrecords").write_bytes(b"")
    data = DataConfig(dataset="folders", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"records folder needs the dataset_spec\.json"):
        task_dataset(data, "train", num_tasks=1, image_size=8, seed=0)
