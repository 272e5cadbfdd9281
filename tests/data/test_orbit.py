import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from litemeta.data.orbit import OrbitDataset
from litemeta.data.orbit_sampler import OrbitTaskSampler
from litemeta.data.orbit_tasks import InterleavedOrbitTasks, OrbitTaskDataset

# user -> object -> (clean frame counts, clutter frame counts)
LAYOUT = {
    "P100": {"keys": ([6, 6, 6], [8, 8]), "mug": ([6, 6], [8])},
    "P200": {"wallet": ([6, 6], [8, 3])},
}
ABSENT = {1, 2}  # frames (1-based) of every clutter video annotated as object not present

# For the protocol's caps: a video longer than the 1,000-frame cap, an object with seven
# clean videos (CLE-VE keeps five as context), and one without an eligible target video.
LONG_LAYOUT = {
    "P300": {
        "box": ([1200, 40], [1100]),
        "cup": ([6] * 7, [60]),
        "pen": ([6], [3]),
    },
}

# For the training sampler: one user with seven objects of many short videos.
MANY_LAYOUT = {"P400": {f"obj{o}": ([12] * 7, [12] * 5) for o in range(7)}}


def write_orbit(root, split="train", layout=None, size=12):
    for user, objects in (LAYOUT if layout is None else layout).items():
        for obj, counts in objects.items():
            for video_type, frame_counts in zip(("clean", "clutter"), counts, strict=True):
                for v, num_frames in enumerate(frame_counts):
                    video = f"{user}--{obj}--{video_type}--vid{v}"
                    folder = root / split / user / obj / video_type / video
                    folder.mkdir(parents=True)
                    annotation = {}
                    for f in range(1, num_frames + 1):
                        name = f"{video}-{f:05d}.jpg"
                        colour = (f * 20 % 256, v * 60, 0)
                        Image.new("RGB", (size, size), colour).save(folder / name)
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


@pytest.fixture(scope="module")
def long_index(tmp_path_factory):
    root = write_orbit(tmp_path_factory.mktemp("orbit-long"), "test", LONG_LAYOUT, size=4)
    return OrbitDataset(root, "test").index


@pytest.fixture(scope="module")
def many_index(tmp_path_factory):
    root = write_orbit(tmp_path_factory.mktemp("orbit-many"), "train", MANY_LAYOUT, size=4)
    return OrbitDataset(root, "train").index


def _video_of(index):
    """(class id, item) -> the video holding that frame."""
    return {(video.object_id, int(item)): video for video in index.videos for item in video.items()}


def _frames(video, items):
    """0-based frame numbers within ``video`` of class items."""
    return [int(i) - video.first_item for i in items]


def _query_items(spec, video_id):
    """Query items of one target video, in task order."""
    pairs = zip(spec.query, spec.query_groups, strict=True)
    return [item for (_, item), group in pairs if group == video_id]


def _named(index, object_id, video_type):
    return {
        index.videos[v].name: index.videos[v] for v in index.object_videos[object_id][video_type]
    }


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


def test_clutter_test_tasks_use_every_clean_video_and_every_valid_target_frame(orbit_root):
    index = OrbitDataset(orbit_root, "train").index
    sampler = OrbitTaskSampler(target="clutter", clip_length=2, min_target_frames=4)
    video_of = _video_of(index)
    spec = sampler.sample(index, 0, np.random.default_rng(0))
    assert spec.classes == (0, 1)
    support_videos = [video_of[(spec.classes[lab], i)] for lab, i in spec.support]
    assert all(v.video_type == "clean" for v in support_videos)
    # every 30th 2-frame clip of a 6-frame video is its first clip: frames 0 and 1
    assert spec.support_counts().tolist() == [3 * 2, 2 * 2]
    assert all(
        _frames(v, [i]) in ([0], [1])
        for v, (_, i) in zip(support_videos, spec.support, strict=True)
    )
    # all valid target frames, in order: frames 2..7 of each clutter video
    by_video: dict[int, list[int]] = {}
    for (label, item), group in zip(spec.query, spec.query_groups, strict=True):
        video = video_of[(spec.classes[label], item)]
        assert video.video_type == "clutter" and video.video_id == group
        by_video.setdefault(group, []).append(item)
    assert len(by_video) == 3
    for group, items in by_video.items():
        assert _frames(index.videos[group], items) == [2, 3, 4, 5, 6, 7]
    again = sampler.sample(index, 0, np.random.default_rng(1))
    assert again == spec, "the test protocol is deterministic"


def test_context_clips_are_padded_with_the_last_frame(orbit_root):
    index = OrbitDataset(orbit_root, "train").index
    sampler = OrbitTaskSampler(clip_length=4, context_clip_stride=1, min_target_frames=4)
    spec = sampler.sample(index, 1, np.random.default_rng(0))
    video_of = _video_of(index)
    first = video_of[(spec.classes[0], spec.support[0][1])]
    assert spec.support_clips is not None
    clips = [[spec.support[p][1] for p in clip] for clip in spec.support_clips[:2]]
    assert [_frames(first, clip) for clip in clips] == [[0, 1, 2, 3], [4, 5, 5, 5]]
    assert len(spec.support) == len({pair for pair in spec.support}), "each frame loads once"
    # ORBIT's code before December 2022 padded a whole clip onto a 4-frame-multiple video
    padded = OrbitTaskSampler(
        clip_length=3, context_clip_stride=1, min_target_frames=4, extra_padding_clip=True
    )
    spec = padded.sample(index, 1, np.random.default_rng(0))
    clips = [[spec.support[p][1] for p in clip] for clip in spec.support_clips[:3]]
    assert [_frames(first, clip) for clip in clips] == [[0, 1, 2], [3, 4, 5], [5, 5, 5]]


def test_test_context_takes_every_30th_clip_of_the_first_1000_frames(long_index):
    index = long_index
    spec = OrbitTaskSampler(min_target_frames=4).sample(index, 0, np.random.default_rng(0))
    video_of = _video_of(index)
    clean = _named(index, 0, "clean")  # class 0 is P300/box
    long_video, short_video = clean["P300--box--clean--vid0"], clean["P300--box--clean--vid1"]
    support = [i for label, i in spec.support if label == 0]
    long_items = [i for i in support if video_of[(0, i)] is long_video]
    short_items = [i for i in support if video_of[(0, i)] is short_video]
    assert _frames(long_video, long_items) == list(range(0, 1000, 30))  # 34 clips, not 40
    assert _frames(short_video, short_items) == [0, 30]

    capped = OrbitTaskSampler(context_clip_stride=1, max_context_clips=5, min_target_frames=4)
    spec = capped.sample(index, 0, np.random.default_rng(0))
    long_items = [i for label, i in spec.support if label == 0 and video_of[(0, i)] is long_video]
    assert _frames(long_video, long_items) == [0, 1, 2, 3, 4]


def test_target_frames_all_valid_up_to_the_cap_or_sampled(long_index):
    index = long_index
    video_of = _video_of(index)
    target = next(iter(_named(index, 0, "clutter").values()))  # 1,100 frames, 2 absent
    every = OrbitTaskSampler(target_frames="all", min_target_frames=4)
    spec = every.sample(index, 0, np.random.default_rng(0))
    items = _query_items(spec, target.video_id)
    assert _frames(target, items) == list(range(2, 1002)), "valid frames, capped at 1,000"

    sampled = OrbitTaskSampler(target_frames="sampled", min_target_frames=4)
    spec = sampled.sample(index, 0, np.random.default_rng(0))
    items = _query_items(spec, target.video_id)
    frames = _frames(target, items)
    assert len(frames) == 200 and frames == sorted(set(frames))
    assert min(frames) >= 2 and max(frames) < 1002
    assert all(video_of[(0, i)] is target for i in items)


def test_objects_without_an_eligible_target_video_are_left_out(long_index):
    index = long_index
    sampler = OrbitTaskSampler(min_target_frames=4)
    assert index.user_objects[0] == [0, 1, 2]
    spec = sampler.sample(index, 0, np.random.default_rng(0))
    assert spec.classes == (0, 1), "pen's only clutter video has one valid frame"
    assert spec.query_counts().min() > 0


def test_clean_target_keeps_the_first_five_sorted_clean_videos_as_context(long_index):
    index = long_index
    sampler = OrbitTaskSampler(target="clean", min_target_frames=4, filter_target_frames=False)
    video_of = _video_of(index)
    spec = sampler.sample(index, 0, np.random.default_rng(3))
    # box: 2 clean videos -> 1 context, 1 target; cup: 7 -> 5 and 2; pen: 1 -> dropped
    assert spec.classes == (0, 1)
    for label, context, targets in (
        (0, ["vid0"], ["vid1"]),
        (1, [f"vid{v}" for v in range(5)], ["vid5", "vid6"]),
    ):
        object_id = spec.classes[label]
        support = {video_of[(object_id, i)].name[-4:] for lab, i in spec.support if lab == label}
        query = {video_of[(object_id, i)].name[-4:] for lab, i in spec.query if lab == label}
        assert sorted(support) == context and sorted(query) == targets
    for seed in range(5):
        assert sampler.sample(index, 0, np.random.default_rng(seed)) == spec


def test_short_target_videos_are_skipped(orbit_root):
    index = OrbitDataset(orbit_root, "train").index
    spec = OrbitTaskSampler(min_target_frames=4).sample(index, 1, np.random.default_rng(0))
    wallet_clutter = index.object_videos[2]["clutter"]
    assert set(spec.query_groups) == {wallet_clutter[0]}, "the 1-valid-frame video is skipped"


def test_training_tasks_follow_orbits_training_sampler(many_index):
    index = many_index
    sampler = OrbitTaskSampler(
        protocol="challenge-2022",
        mode="train",
        clip_length=1,
        extra_padding_clip=False,
        train_video_caps=True,
        min_target_frames=1,
    )
    video_of = _video_of(index)
    ways, context_counts, clip_counts = set(), {False: set(), True: set()}, set()
    target_counts = {False: set(), True: set()}
    for seed in range(300):
        spec = sampler.sample(index, 0, np.random.default_rng(seed))
        ways.add(spec.way)
        many = spec.way >= 6
        for label, object_id in enumerate(spec.classes):
            clips: dict[int, int] = {}
            for lab, item in spec.support:
                if lab == label:
                    video = video_of[(object_id, item)]
                    assert video.video_type == "clean"
                    clips[video.video_id] = clips.get(video.video_id, 0) + 1
            context_counts[many].add(len(clips))
            clip_counts.update(clips.values())
            targets = {
                g for (lab, _), g in zip(spec.query, spec.query_groups, strict=True) if lab == label
            }
            target_counts[many].add(len(targets))
    assert ways == set(range(2, 8))
    assert context_counts[False] == set(range(1, 8)) and context_counts[True] == set(range(1, 6))
    assert target_counts[False] == set(range(1, 6)) and target_counts[True] == set(range(1, 5))
    assert clip_counts == set(range(1, 11)), "1..10 random clips of a 12-clip video"

    capped = OrbitTaskSampler(mode="train", max_way=3, min_target_frames=1)
    ways = {capped.sample(index, 0, np.random.default_rng(s)).way for s in range(50)}
    assert ways == {2, 3}


def test_tasks_load_with_groups_and_are_reproducible_in_workers(orbit_root):
    dataset = OrbitDataset(orbit_root, "train", decode_size=10)
    sampler = OrbitTaskSampler(mode="train", min_target_frames=4)
    tasks = OrbitTaskDataset(dataset, sampler, tasks_per_user=2, seed=5)
    assert len(tasks) == 4 and tasks.user_of(3) == "P200"
    task = tasks[0]
    assert task.support_images.shape[1:] == (3, 10, 10) and task.support_images.dtype == torch.uint8
    assert task.query_groups is not None and task.query_groups.shape == task.query_labels.shape
    assert task.class_names == ["P100/keys", "P100/mug"]
    serial = [t.query_groups for t in DataLoader(tasks, batch_size=None)]
    parallel = [t.query_groups for t in DataLoader(tasks, batch_size=None, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_interleaved_tasks_take_the_users_in_turn(orbit_root):
    dataset = OrbitDataset(orbit_root, "train")
    sampler = OrbitTaskSampler(min_target_frames=4)
    by_user = OrbitTaskDataset(dataset, sampler, tasks_per_user=3, seed=2)
    tasks = InterleavedOrbitTasks(by_user, num_tasks=5)
    assert len(tasks) == 5 and len(InterleavedOrbitTasks(by_user)) == 6
    assert [tasks.user_of(i) for i in range(5)] == ["P100", "P200", "P100", "P200", "P100"]
    assert torch.equal(tasks[3].query_groups, by_user[4].query_groups)
    with pytest.raises(IndexError, match=r"out of range 0\.\.4"):
        tasks[5]
    with pytest.raises(ValueError, match="raise tasks_per_user"):
        InterleavedOrbitTasks(by_user, num_tasks=7)


def test_task_dataset_warns_about_dropped_objects_and_users(tmp_path):
    layout = {"P1": {"cup": ([4, 4], [4])}, "P2": {"pen": ([4], [4])}}
    dataset = OrbitDataset(write_orbit(tmp_path, "test", layout, size=4), "test")
    sampler = OrbitTaskSampler(target="clean", min_target_frames=2, filter_target_frames=False)
    with pytest.warns(UserWarning, match=r"1 ORBIT objects .* \['P2/pen'\]"):
        tasks = OrbitTaskDataset(dataset, sampler)
    assert len(tasks) == 1 and tasks.user_of(0) == "P1"
    with pytest.raises(ValueError, match=r"users \['P2'\] have no object"), pytest.warns():
        OrbitTaskDataset(dataset, sampler, users=["P2"])


def test_clean_target_needs_two_clean_videos(tmp_path):
    root = tmp_path / "orbit"
    folder = root / "test" / "P1" / "cup" / "clean" / "v0"
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "v0-00001.jpg")
    dataset = OrbitDataset(root, "test")
    with pytest.raises(ValueError, match="no object with both a context video"), pytest.warns():
        OrbitTaskDataset(dataset, OrbitTaskSampler(target="clean", filter_target_frames=False))


def test_sampler_settings_are_checked():
    with pytest.raises(ValueError, match="mode must be one of"):
        OrbitTaskSampler(mode="eval")
    with pytest.raises(ValueError, match="frame_cap must be at least 1"):
        OrbitTaskSampler(frame_cap=0)


def test_missing_split_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="split folder"):
        OrbitDataset(tmp_path, "validation")


def test_reader_checks_name_the_problem(orbit_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"annotation folder .* point annotations_root"):
        OrbitDataset(orbit_root, "train", annotations_root=tmp_path / "none")
    (tmp_path / "train" / "P1" / "cup").mkdir(parents=True)
    with pytest.raises(ValueError, match="no ORBIT videos found under"), pytest.warns():
        OrbitDataset(tmp_path, "train")
    (tmp_path / "train" / "P1" / "cup" / "clutter" / "v0").mkdir(parents=True)
    skipped = pytest.warns(UserWarning, match=r"left out: P1/cup/clutter/v0 \(a video folder")
    with pytest.raises(ValueError, match="no ORBIT videos"), skipped:
        OrbitDataset(tmp_path, "train")
    bad = tmp_path / "bad-annotations"
    bad.mkdir()
    (bad / "P100--keys--clutter--vid0.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read ORBIT annotation .* repair or delete"):
        OrbitDataset(orbit_root, "train", annotations_root=bad)


def test_skipped_empty_video_is_reported_at_the_callers_line(tmp_path):
    write_orbit(tmp_path, layout={"P1": {"cup": ([6], [8])}})
    (tmp_path / "train" / "P1" / "cup" / "clean" / "empty").mkdir()
    with pytest.warns(UserWarning, match="without frames") as caught:
        dataset = OrbitDataset(tmp_path, "train")
    assert caught[0].filename == __file__
    assert [v.name for v in dataset.index.videos] == [
        "P1--cup--clean--vid0",
        "P1--cup--clutter--vid0",
    ]


def test_folders_that_are_not_used_are_named_in_one_warning(tmp_path):
    write_orbit(tmp_path, layout={"P1": {"cup": ([2], [2]), "pen": ([2], [])}})
    cup, pen = tmp_path / "train" / "P1" / "cup", tmp_path / "train" / "P1" / "pen"
    Image.new("RGB", (4, 4)).save(cup / "clean" / "loose-00001.jpg")
    (cup / "clean" / "empty").mkdir()
    (pen / "Clutter" / "v0").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(pen / "Clutter" / "v0" / "v0-00001.jpg")
    (tmp_path / "train" / "P2" / "mug" / "clean").mkdir(parents=True)
    (tmp_path / "train" / "P3").mkdir()
    with pytest.warns(UserWarning, match="left out") as caught:
        dataset = OrbitDataset(tmp_path, "train")
    [message] = [str(w.message) for w in caught]
    assert dataset.index.users == ["P1"] and dataset.class_names == ["P1/cup", "P1/pen"]
    assert message.startswith("6 folders under ORBIT split ")
    assert (
        "left out: P1/cup/clean (frames outside a video folder), P1/cup/clean/empty (a video "
        "folder without frames), P1/pen/Clutter (not clean/ or clutter/), P2/mug (an object "
        "without videos), P2 (a user without videos), ...; expected "
        "<user>/<object>/{clean,clutter}/<video>/<frames>"
    ) in message


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        ([], r"expected an object of frame names, got \[\]"),
        ({"v0-00001.jpg": "absent"}, r"frame v0-00001\.jpg has 'absent', not an object"),
        (
            {"v0-00001.jpg": {"object_not_present_issue": "yes"}},
            r"object_not_present_issue of v0-00001\.jpg is 'yes', not true, false or null",
        ),
    ],
)
def test_annotation_of_the_wrong_shape_is_named(tmp_path, annotation, problem):
    video = tmp_path / "train" / "P1" / "cup" / "clutter" / "v0"
    video.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(video / "v0-00001.jpg")
    path = tmp_path / "annotations" / "train" / "v0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(annotation))
    message = f"cannot read ORBIT annotation {re.escape(str(path))}: {problem}; repair or delete"
    with pytest.raises(ValueError, match=message):
        OrbitDataset(tmp_path, "train")


def test_protocols_set_every_choice_and_settings_override_them():
    from typing import get_args

    from litemeta.data.orbit_sampler import ORBIT_PROTOCOLS, ProtocolName

    assert list(ORBIT_PROTOCOLS) == list(get_args(ProtocolName))
    assert sorted(ORBIT_PROTOCOLS) == ["challenge-2022", "dec-2022", "lite-2021"]
    lite = OrbitTaskSampler(protocol="lite-2021").resolved
    # microsoft/ORBIT-Dataset 01b7448 (utils/args.py, data/datasets.py, data/dataloaders.py)
    assert (lite.clip_length, lite.context_clips, lite.max_context_clips) == (8, "fixed", 8)
    assert (lite.target_frames, lite.filter_target_frames, lite.min_target_frames) == (
        "all",
        False,
        1,
    )
    assert (lite.max_test_way, lite.train_context_clips, lite.train_max_clips) == (None, "fixed", 4)
    # 97ccae1 (utils/args.py, data/datasets.py, README "Testing protocol (updated Dec 2022)")
    now = OrbitTaskSampler().resolved
    assert (now.clip_length, now.context_clips, now.context_clip_stride) == (1, "uniform", 30)
    assert (now.target_frames, now.max_target_clips, now.filter_target_frames) == (
        "sampled",
        200,
        True,
    )
    assert (now.min_target_frames, now.max_test_way, now.max_way) == (50, 15, 15)
    mixed = OrbitTaskSampler(protocol="lite-2021", clip_length=4, max_test_way=0).resolved
    assert (mixed.clip_length, mixed.context_clips, mixed.max_test_way) == (4, "fixed", None)
    with pytest.raises(ValueError, match="protocol must be one of"):
        OrbitTaskSampler(protocol="2021")


FILTER_CASES = {  # frame -> object_not_present_issue (missing: frame absent from the file)
    1: False,
    2: True,
    3: None,
    4: "missing",
    5: False,
    6: False,
}


def test_target_filter_keeps_only_frames_annotated_as_showing_the_object(tmp_path):
    write_orbit(tmp_path, "test", {"P1": {"cup": ([4], [6])}}, size=4)
    video = "P1--cup--clutter--vid0"
    annotation = {
        f"{video}-{f:05d}.jpg": {"object_not_present_issue": issue}
        for f, issue in FILTER_CASES.items()
        if issue != "missing"
    }
    (tmp_path / "annotations" / "test" / f"{video}.json").write_text(json.dumps(annotation))
    index = OrbitDataset(tmp_path, "test").index
    target = index.videos[index.object_videos[0]["clutter"][0]]
    # ORBIT's filter (97ccae1, data/datasets.py is_criteria_satisfied) keeps a frame only
    # when no_object_not_present_issue is among its annotations: the value False.
    assert target.object_present.tolist() == [True, False, False, False, True, True]
    filtered = OrbitTaskSampler(min_target_frames=1)
    spec = filtered.sample(index, 0, np.random.default_rng(0))
    assert _frames(target, _query_items(spec, target.video_id)) == [0, 4, 5]
    assert OrbitTaskSampler(min_target_frames=4).objects(index, 0) == [], "3 valid frames < 4"
    training = OrbitTaskSampler(mode="train", min_target_frames=6)
    assert training.objects(index, 0) == [0], "training targets are not filtered"
    unfiltered = OrbitTaskSampler(protocol="lite-2021", clip_length=1, extra_padding_clip=False)
    spec = unfiltered.sample(index, 0, np.random.default_rng(0))
    assert _frames(target, _query_items(spec, target.video_id)) == list(range(6))
    clean = OrbitTaskSampler(target="clean", min_target_frames=1)
    (tmp_path / "test" / "P1" / "cup" / "clean" / "vid9").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "P1" / "cup" / "clean" / "vid9" / "a.jpg")
    with pytest.raises(ValueError, match=r"vid9 has no annotation file, and protocol 'dec-2022'"):
        clean.objects(OrbitDataset(tmp_path, "test").index, 0)


def test_test_tasks_take_at_most_15_objects_from_the_dec_2022_protocol(tmp_path):
    layout = {"P1": {f"obj{o:02d}": ([2], [2]) for o in range(17)}}
    index = OrbitDataset(write_orbit(tmp_path, "test", layout, size=4), "test").index
    capped = OrbitTaskSampler(min_target_frames=1, filter_target_frames=False)
    ways = set()
    for seed in range(5):
        spec = capped.sample(index, 0, np.random.default_rng(seed))
        assert spec.way == 15 and list(spec.classes) == sorted(spec.classes)
        ways.add(spec.classes)
    assert len(ways) > 1, "a random 15 of the user's 17 objects per task"
    every = OrbitTaskSampler(protocol="lite-2021", min_target_frames=1)
    assert every.sample(index, 0, np.random.default_rng(0)).way == 17


def test_lite_2021_context_has_8_clips_of_8_frames_and_targets_a_window_per_frame(tmp_path):
    # 20-frame clean video: padded to 24 (3 clips), too few for 8 clips: 40 random frames
    # are repeated (ORBIT 01b7448 sample_clips_from_a_video); 16-frame clutter video:
    # padded with a whole extra clip (24 frames), every one scored with its 8-frame history.
    index = OrbitDataset(
        write_orbit(tmp_path, "test", {"P1": {"cup": ([20], [16])}}, size=4), "test"
    ).index
    sampler = OrbitTaskSampler(protocol="lite-2021")
    spec = sampler.sample(index, 0, np.random.default_rng(0))
    clean = index.videos[index.object_videos[0]["clean"][0]]
    clutter = index.videos[index.object_videos[0]["clutter"][0]]
    context = [[spec.support[p][1] for p in clip] for clip in spec.support_clips]
    assert len(context) == 8 and all(len(clip) == 8 for clip in context)
    flat = [f for clip in context for f in _frames(clean, clip)]
    assert flat == sorted(flat) and set(range(20)) <= set(flat)
    assert flat.count(19) >= 5, "the last frame pads 4 slots, and may be drawn again"
    windows = [[spec.query[p][1] for p in clip] for clip in spec.query_clips]
    assert len(windows) == 24
    assert _frames(clutter, windows[0]) == [0] * 8
    assert _frames(clutter, windows[3]) == [0, 0, 0, 0, 0, 1, 2, 3]
    assert _frames(clutter, windows[23]) == [15] * 8
    dedup = OrbitTaskSampler(protocol="challenge-2022")  # 5a2b4e8 drops padded frames
    spec = dedup.sample(index, 0, np.random.default_rng(0))
    assert len(spec.query_clips) == 16
    assert 1 <= len(spec.support_clips) <= 3, "a random number of the 3 clips, at most 10"


def test_lite_2021_test_tasks_of_a_user_share_their_targets(tmp_path):
    layout = {"P1": {"cup": ([3], [2] * 17)}}
    dataset = OrbitDataset(write_orbit(tmp_path, "test", layout, size=4), "test")
    sampler = OrbitTaskSampler(protocol="lite-2021", clip_length=1, extra_padding_clip=False)
    tasks = OrbitTaskDataset(dataset, sampler, tasks_per_user=3, seed=0)
    groups = [set(tasks.spec(i).query_groups) for i in range(3)]
    assert len(groups[0]) == 15 and groups[0] == groups[1] == groups[2]
    now = OrbitTaskSampler(min_target_frames=1, filter_target_frames=False)
    fresh = OrbitTaskDataset(dataset, now, tasks_per_user=3)
    assert len({frozenset(fresh.spec(i).query_groups) for i in range(3)}) > 1
