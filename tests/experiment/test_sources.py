"""Meta-Dataset from several record folders through the experiment layer: the training
split mixes the sources per task, the other splits are evaluated source by source and
reported per source with the average over sources; ImageNet's DAG is off in training and on
in evaluation, as LITE's meta_dataset_reader.py sets it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from litemeta.config import ConfigError
from litemeta.data import MixedSourceTasks, PerSourceTasks
from litemeta.data.kinds.meta_dataset import source_folders
from litemeta.evaluation import evaluate, summarise_sources, write_report
from litemeta.experiment import (
    DataConfig,
    SamplerConfig,
    build_model,
    load_experiment,
    task_dataset,
)
from litemeta.experiment.jobs import evaluate_experiment, train_experiment
from tests.cli_helpers import TINY_OVERRIDES
from tests.data.test_metadataset_sources import write_source

FLAT = {"TRAIN": [8] * 6, "VALID": [6] * 5, "TEST": [6] * 5}


def _node(wn_id: str, children: list[str] = ()) -> dict:
    return {"wn_id": wn_id, "words": wn_id, "children_ids": list(children), "parents_ids": []}


def write_imagenet_like(root: Path) -> Path:
    """A hierarchical spec (no records needed to sample specs): a train DAG of 12 leaves
    under two 6-leaf nodes and a root, a test DAG of 6 leaves under one node."""
    train_leaves = [f"n{i:02d}" for i in range(12)]
    test_leaves = [f"m{i:02d}" for i in range(6)]
    spec = {
        "__class__": "HierarchicalDatasetSpecification",
        "name": "ilsvrc_2012",
        "split_subgraphs": {
            "TRAIN": [
                _node("root", ["x", "y"]),
                _node("x", train_leaves[:6]),
                _node("y", train_leaves[6:]),
                *(_node(leaf) for leaf in train_leaves),
            ],
            "VALID": [],
            "TEST": [_node("t", test_leaves), *(_node(leaf) for leaf in test_leaves)],
        },
        "images_per_class": {
            "TRAIN": {leaf: 20 for leaf in train_leaves},
            "VALID": {},
            "TEST": {leaf: 20 for leaf in test_leaves},
        },
        "class_names": {str(i): leaf for i, leaf in enumerate(train_leaves + test_leaves)},
        "file_pattern": "{}.tfrecords",
    }
    folder = root / "ilsvrc_2012"
    folder.mkdir()
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    return folder


def write_omniglot_like(root: Path) -> Path:
    spec = {
        "__class__": "BiLevelDatasetSpecification",
        "name": "omniglot",
        "superclasses_per_split": {"TRAIN": 2, "VALID": 0, "TEST": 1},
        "classes_per_superclass": {"0": 5, "1": 6, "2": 5},
        "images_per_class": {str(c): 20 for c in range(16)},
        "superclass_names": {},
        "class_names": {str(c): f"char{c}" for c in range(16)},
        "file_pattern": "{}.tfrecords",
    }
    folder = root / "omniglot"
    folder.mkdir()
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    return folder


def variable(**options) -> SamplerConfig:
    return SamplerConfig(kind="variable", **options)


def test_training_mixes_the_sources_and_the_other_splits_list_each_sources_tasks(tmp_path):
    for index, name in enumerate(("aircraft", "dtd", "fungi")):
        write_source(tmp_path, name, FLAT, index=index, spec_only=True)
    data = DataConfig(
        dataset="meta-dataset",
        root=str(tmp_path),
        sources=["aircraft", "dtd"],
        validation_sources=["fungi"],
        sampler=variable(),
    )
    train = task_dataset(data, "train", num_tasks=40, image_size=16, seed=0)
    assert isinstance(train, MixedSourceTasks) and len(train) == 40
    assert set(train.sources) == {"aircraft", "dtd"}
    assert {train.source_of(i) for i in range(40)} == {"aircraft", "dtd"}
    validation = task_dataset(data, "validation", num_tasks=3, image_size=16, seed=1)
    assert isinstance(validation, PerSourceTasks) and len(validation) == 3
    assert [validation.source_of(i) for i in range(3)] == ["fungi"] * 3
    test = task_dataset(data, "test", num_tasks=4, image_size=16, seed=2)  # data.sources
    assert [test.source_of(i) for i in range(8)] == ["aircraft"] * 4 + ["dtd"] * 4
    # A source's test tasks are those of a single-source run of its folder.
    alone = DataConfig(dataset="meta-dataset", root=str(tmp_path / "dtd"), sampler=variable())
    single = task_dataset(alone, "test", num_tasks=4, image_size=16, seed=2)
    assert [test.spec(4 + i)[1] for i in range(4)] == [single.spec(i) for i in range(4)]


def test_sources_are_folders_under_the_root_or_paths_of_their_own(tmp_path):
    elsewhere = write_source(tmp_path / "other", "mnist", FLAT, spec_only=True)
    data = DataConfig(
        dataset="meta-dataset", root=str(tmp_path), sources=["omniglot", str(elsewhere)]
    )
    assert source_folders(data, "train") == {
        "omniglot": tmp_path / "omniglot",
        "mnist": elsewhere,
    }


def test_imagenets_dag_is_off_in_training_and_on_in_evaluation(tmp_path):
    write_imagenet_like(tmp_path)
    write_omniglot_like(tmp_path)
    names = ["ilsvrc_2012", "omniglot"]

    def hierarchies(split: str, **sampler) -> dict:
        data = DataConfig(
            dataset="meta-dataset", root=str(tmp_path), sources=names, sampler=variable(**sampler)
        )
        tasks = task_dataset(data, split, num_tasks=5, image_size=16, seed=0)
        found = {}
        for name, source in tasks.sources.items():
            hierarchy = source.sampler.hierarchy
            found[name] = None if hierarchy is None else hierarchy.kind
        return found

    # LITE: use_dag_ontology False for ilsvrc_2012 in the multi-source training pipeline,
    # True in single-source evaluation; Omniglot's alphabets on in both.
    assert hierarchies("train") == {"ilsvrc_2012": None, "omniglot": "bilevel"}
    assert hierarchies("test") == {"ilsvrc_2012": "dag", "omniglot": "bilevel"}
    assert hierarchies("train", train_dag=True) == {"ilsvrc_2012": "dag", "omniglot": "bilevel"}
    assert hierarchies("test", hierarchy=False) == {"ilsvrc_2012": None, "omniglot": None}

    # The same default for a single source's folder.
    alone = DataConfig(
        dataset="meta-dataset", root=str(tmp_path / "ilsvrc_2012"), sampler=variable()
    )
    train = task_dataset(alone, "train", num_tasks=300, image_size=16, seed=0)
    assert train.sampler.hierarchy is None
    # Without the DAG, ways other than a node's leaf count (6 or 12) occur.
    assert {train.spec(i).way for i in range(300)} - {6, 12}
    test = task_dataset(alone, "test", num_tasks=20, image_size=16, seed=0)
    assert {test.spec(i).way for i in range(20)} == {6}  # the one node's 6 leaves


def test_source_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.dataset=meta-dataset"):
        DataConfig(dataset="folders", root=str(tmp_path), sources=["a"])
    with pytest.raises(ConfigError, match="non-empty list"):
        DataConfig(dataset="meta-dataset", sources=[])
    with pytest.raises(ConfigError, match=r"names the source\(s\) \['omniglot'\] twice"):
        DataConfig(dataset="meta-dataset", test_sources=["omniglot", "/x/omniglot"])
    only_test = DataConfig(dataset="meta-dataset", root=str(tmp_path), test_sources=["dtd"])
    with pytest.raises(ConfigError, match=r"data.sources is not set, so the 'train' split"):
        task_dataset(only_test, "train", num_tasks=2, image_size=16, seed=0)
    write_source(tmp_path, "traffic_sign", {"TEST": [6] * 5}, spec_only=True)
    data = DataConfig(
        dataset="meta-dataset", root=str(tmp_path), sources=["traffic_sign"], sampler=variable()
    )
    with pytest.raises(ValueError, match="traffic_sign has no classes in split 'train'"):
        task_dataset(data, "train", num_tasks=2, image_size=16, seed=0)
    config = load_experiment(
        "meta-dataset", [f"data.root={tmp_path}", "data.test_sources=[omniglot, dtd]"]
    )
    assert config.data.test_sources == ["omniglot", "dtd"] and config.data.sources is None
    assert config.data.sampler.train_dag is False


def test_the_average_over_sources_is_the_mean_of_the_source_means():
    accuracies = [1.0, 0.5, 0.0, 0.25, 0.75, 0.5]
    summary = summarise_sources(accuracies, ["a", "a", "b", "b", "c", "a"])
    # By hand: a = (1 + 0.5 + 0.5) / 3, b = (0 + 0.25) / 2, c = 0.75; each source counts once.
    mean_a, mean_b, mean_c = 2 / 3, 0.125, 0.75
    assert list(summary.per_source) == ["a", "b", "c"]
    assert [s.mean for s in summary.per_source.values()] == pytest.approx([mean_a, mean_b, mean_c])
    assert [s.n for s in summary.per_source.values()] == [3, 2, 1]
    std_a = math.sqrt(((1 - mean_a) ** 2 + 2 * (0.5 - mean_a) ** 2) / 3)  # population std
    assert summary.per_source["a"].ci95 == pytest.approx(1.96 * std_a / math.sqrt(3))
    assert summary.per_source["b"].ci95 == pytest.approx(1.96 * 0.125 / math.sqrt(2))
    assert summary.average == pytest.approx((mean_a + mean_b + mean_c) / 3)
    assert summary.average != pytest.approx(sum(accuracies) / 6)  # not the mean over tasks
    with pytest.raises(ValueError, match="2 sources for 6 tasks"):
        summarise_sources(accuracies, ["a", "b"])


def _tiny_model():
    overrides = ["model.backbone=resnet18", "model.pretrained=false", "model.image_size=16"]
    return load_experiment("default", overrides).model


def test_evaluate_reports_each_source_and_their_average(tmp_path):
    for index, name in enumerate(("cu_birds", "quickdraw")):
        write_source(tmp_path, name, FLAT, index=index)
    data = DataConfig(
        dataset="meta-dataset",
        root=str(tmp_path),
        test_sources=["cu_birds", "quickdraw"],
        sampler=variable(),
    )
    tasks = task_dataset(data, "test", num_tasks=3, image_size=16, seed=1)
    torch.manual_seed(0)
    learner = build_model(_tiny_model()).eval()
    result = evaluate(learner, tasks, progress=False)
    # By hand: each task's query accuracy, grouped by source, then the mean of the means.
    by_hand: dict[str, list[float]] = {"cu_birds": [], "quickdraw": []}
    with torch.no_grad():
        for index in range(len(tasks)):
            task = tasks[index]
            classifier = learner.adapt(task.support_images, task.support_labels)
            right = classifier(task.query_images).argmax(-1) == task.query_labels
            by_hand[tasks.source_of(index)].append(float(right.double().mean()))
    assert result.sources is not None
    means = {name: sum(values) / 3 for name, values in by_hand.items()}
    assert {n: s.mean for n, s in result.sources.per_source.items()} == pytest.approx(means)
    assert result.sources.average == pytest.approx(sum(means.values()) / 2)

    paths = write_report({"model": result}, tmp_path / "report")
    saved = json.loads(paths["json"].read_text())["model"]["sources"]
    assert saved["average"] == pytest.approx(result.sources.average)
    assert saved["per_source"]["quickdraw"]["n"] == 3
    table = paths["markdown"].read_text()
    birds = result.sources.per_source["cu_birds"]
    assert f"| model | cu_birds | 3 | {100 * birds.mean:.2f} ± {100 * birds.ci95:.2f} |" in table
    assert f"| model | average over 2 sources | 6 | {100 * result.sources.average:.2f} |" in table


def test_the_evaluate_job_reports_per_source(tmp_path):
    for index, name in enumerate(("dtd", "fungi")):
        write_source(tmp_path, name, FLAT, index=index)
    config = load_experiment(
        "meta-dataset",
        [
            f"data.root={tmp_path}",
            "data.test_sources=[dtd, fungi]",
            "data.workers=0",
            "model.learner=protonets",
            "model.backbone=resnet18",
            "model.pretrained=false",
            "model.image_size=16",
        ],
    )
    results = evaluate_experiment(config, checkpoint=None, num_tasks=2, output_dir=tmp_path / "out")
    (result,) = results.values()
    assert list(result.sources.per_source) == ["dtd", "fungi"]
    assert [s.n for s in result.sources.per_source.values()] == [2, 2]
    assert "average over 2 sources | 4 |" in (tmp_path / "out" / "results.md").read_text()


def test_a_training_run_over_several_sources_reports_its_test_sources(tmp_path):
    for index, name in enumerate(("aircraft", "dtd", "mscoco")):
        write_source(tmp_path, name, FLAT, index=index)
    config = load_experiment(
        "default",
        [
            *TINY_OVERRIDES,
            "data.dataset=meta-dataset",
            f"data.root={tmp_path}",
            "data.sources=[aircraft, dtd]",
            "data.validation_sources=[mscoco]",
            "data.test_sources=[dtd, mscoco]",
            "data.sampler.kind=variable",
            "data.support_styles=null",
            "data.query_styles=null",
            "training.steps=2",
            f"training.output_dir={tmp_path / 'run'}",
        ],
    )
    train_experiment(config, compare_baseline=False)
    report = json.loads((tmp_path / "run" / "test" / "results.json").read_text())
    (result,) = report.values()
    assert list(result["sources"]["per_source"]) == ["dtd", "mscoco"]
    assert [s["n"] for s in result["sources"]["per_source"].values()] == [2, 2]
