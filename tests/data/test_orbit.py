import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from litemeta.data.orbit import OrbitDataset, OrbitTaskDataset, OrbitTaskSampler

# user -> object -> (clean frame counts, clutter frame counts)
LAYOUT = {
    "P100": {"keys": ([6, 6, 6], [8, 8]), "mug": ([6, 6], [8])},
    "P200": {"wallet": ([6, 6], [8, 3])},
}
ABSENT = {1, 2}  # frames (1-based) of every clutter video annotated as object not present


def write_orbit(root, split="train"):
    for user, objects in LAYOUT.items():
        for obj, counts in objects.items():
            for video_type, frame_counts in zip(("clean", "clutter"), counts, strict=True):
                for v, num_frames in enumerate(frame_counts):
                    video = f"{user}--{obj}--{video_type}--vid{v}"
                    folder = root / split / user / obj / video_type / video
                    folder.mkdir(parents=True)
                    annotation = {}
                    for f in range(1, num_frames + 1):
                        name = f"{video}-{f:05d}.jpg"
                        Image.new("RGB", (12, 12), (f * 20, v * 60, 0)).save(folder / name)
                        absent = video_type == "clutter" and f in ABSENT
                        box = None if absent else {"x": 1, "y": 2, "w": 3, "h": 4}
                        annotation[name] = {
                            "object_bounding_box": box,
                            "object_not_present_issue": absent,
                        }
                    if video_type == "clutter":
                        annotations = root / "annotations" / split
                        annotations.mkdir(parents=True, exist_ok=True)
                        (annotations / f"{video}.json").write_text(json.dumps(annotation))
    return root


@pytest.fixture(scope="module")
def orbit_root(tmp_path_factory):
    return write_orbit(tmp_path_factory.mktemp("orbit"))


def test_reader_indexes_users_objects_videos_and_annotations(orbit_root):
    dataset = OrbitDataset(orbit_root, "train")
    index = dataset.index
    assert index.users == ["P100", "P200"]
    assert dataset.class_names == ["P100/keys", "P100/mug", "P200/wallet"]
    assert dataset.num_items(0) == 3 * 6 + 2 * 8
    keys_clutter = [index.videos[v] for v in index.object_videos[0]["clutter"]]
    assert keys_clutter[0].object_present.tolist() == [False, False] + [True] * 6
    assert index.videos[index.object_videos[0]["clean"][0]].object_present is None
    assert set(dataset.item_styles(0)) == {"clean", "clutter"}


def test_clutter_tasks_follow_the_protocol(orbit_root):
    dataset = OrbitDataset(orbit_root, "train")
    index = dataset.index
    sampler = OrbitTaskSampler(
        target="clutter", clip_length=2, context_clips_per_video=2, min_target_frames=4
    )
    for seed in range(10):
        spec = sampler.sample(index, 0, np.random.default_rng(seed))
        assert spec.classes == (0, 1)
        frame_video = {}
        for video in index.videos:
            for item in video.items():
                frame_video[(video.object_id, int(item))] = video
        support_videos = [frame_video[(spec.classes[lab], i)] for lab, i in spec.support]
        assert all(v.video_type == "clean" for v in support_videos)
        assert spec.support_counts().tolist() == [3 * 2 * 2, 2 * 2 * 2]
        # clips are runs of consecutive frames of one video
        for start in range(0, len(spec.support), 2):
            (la, a), (lb, b) = spec.support[start], spec.support[start + 1]
            assert la == lb and b == a + 1
        for (label, item), group in zip(spec.query, spec.query_groups, strict=True):
            video = frame_video[(spec.classes[label], item)]
            assert video.video_type == "clutter" and video.video_id == group
            assert video.object_present[item - video.first_item], "absent frames are dropped"
        assert len(spec.query) == 3 * 6  # 6 valid frames per clutter video -> 3 clips each


def test_short_target_videos_are_skipped(orbit_root):
    index = OrbitDataset(orbit_root, "train").index
    spec = OrbitTaskSampler(min_target_frames=4).sample(index, 1, np.random.default_rng(0))
    wallet_clutter = index.object_videos[2]["clutter"]
    assert set(spec.query_groups) == {wallet_clutter[0]}, "the 1-valid-frame video is skipped"


def test_clean_target_holds_out_clean_videos(orbit_root):
    index = OrbitDataset(orbit_root, "train").index
    sampler = OrbitTaskSampler(target="clean", context_clips_per_video=None, min_target_frames=1)
    spec = sampler.sample(index, 0, np.random.default_rng(1))
    clean_keys = set(index.object_videos[0]["clean"])
    query_videos = {
        g for (label, _), g in zip(spec.query, spec.query_groups, strict=True) if label == 0
    }
    assert len(query_videos) == 1 and query_videos <= clean_keys
    assert spec.support_counts()[0] == 2 * 6, "the other two clean videos are the context"


def test_max_way_caps_objects(orbit_root):
    index = OrbitDataset(orbit_root, "train").index
    spec = OrbitTaskSampler(max_way=1, min_target_frames=1).sample(
        index, 0, np.random.default_rng(0)
    )
    assert spec.way == 1


def test_tasks_load_with_groups_and_are_reproducible_in_workers(orbit_root):
    dataset = OrbitDataset(orbit_root, "train")
    sampler = OrbitTaskSampler(context_clips_per_video=2, min_target_frames=4)
    tasks = OrbitTaskDataset(dataset, sampler, image_size=10, tasks_per_user=2, seed=5)
    assert len(tasks) == 4 and tasks.user_of(3) == "P200"
    task = tasks[0]
    assert task.support_images.shape[1:] == (3, 10, 10) and task.support_images.dtype == torch.uint8
    assert task.query_groups is not None and task.query_groups.shape == task.query_labels.shape
    assert task.class_names == ["P100/keys", "P100/mug"]
    serial = [t.query_groups for t in DataLoader(tasks, batch_size=None)]
    parallel = [t.query_groups for t in DataLoader(tasks, batch_size=None, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_clean_target_needs_two_clean_videos(tmp_path):
    root = tmp_path / "orbit"
    folder = root / "test" / "P1" / "cup" / "clean" / "v0"
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "v0-00001.jpg")
    dataset = OrbitDataset(root, "test")
    with pytest.raises(ValueError, match="has 1 clean videos, needs 2"):
        OrbitTaskDataset(dataset, OrbitTaskSampler(target="clean"), image_size=8)


def test_missing_split_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="split folder"):
        OrbitDataset(tmp_path, "validation")
