"""VTAB-1k's 19 tasks as google-research/task_adaptation defines them (``data/*.py`` and
``scripts/run_all_tasks.sh``): TFDS dataset and version, the ``train800``, ``val200`` and
``test`` splits, the label recipe and the classes of each; and an export of a task from
TensorFlow Datasets into the class folders :func:`litemeta.data.vtab.vtab_task` reads.

``protocol='vtab-1k'`` writes ``train800/``, ``val200/`` and ``test/``; ``protocol='lite'``
writes LITE's VTAB evaluation (``tf_dataset_reader.py`` of cambridge-mlg/LITE): ``train/``
(TFDS ``train[:1000]``; all of SUN397's ``train``, for LITE's fill) and LITE's ``test/``.
Each image is saved losslessly as ``<split>/<label>/<index>.png``, ``index`` its place in
the split, so that file-name order is TFDS order (what ``lite-first-1000`` takes first).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

__all__ = [
    "VTAB_TASKS",
    "TfdsReader",
    "VtabTaskSpec",
    "export_vtab_task",
    "vtab_splits",
]

Example = Mapping[str, Any]
"""One TFDS example as ``tfds.as_numpy`` gives it (``image``, ``label``, ``objects``...)."""

Protocol_ = Literal["vtab-1k", "lite"]

#: CLEVR closest-object distance: class k when ``thresholds[k] < min depth <= thresholds[k+1]``.
CLEVR_DISTANCE_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
#: KITTI closest-vehicle distance (metres); 1,000 stands for "no vehicle" (class 3).
KITTI_VEHICLE_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
KITTI_NO_VEHICLE = 1000.0
KITTI_VEHICLE_TYPES = 3  # types 0, 1, 2: Car, Van, Truck


def _bin(value: float, thresholds: Iterable[float]) -> int:
    """The largest ``k`` with ``thresholds[k] < value`` (task_adaptation's
    ``reduce_max(where(thrs - value < 0))``)."""
    below = [k for k, threshold in enumerate(thresholds) if threshold < value]
    if not below:
        raise ValueError(f"{value} lies below the first threshold of {tuple(thresholds)}")
    return below[-1]


def label_of(example: Example) -> int:
    """The dataset's own ``label``."""
    return int(example["label"])


def clevr_count(example: Example) -> int:
    """CLEVR ``count_all``: the number of objects minus 3 (scenes hold 3 to 10)."""
    return len(example["objects"]["size"]) - 3


def clevr_closest_distance(example: Example) -> int:
    """CLEVR ``closest_object_distance``: the smallest object depth (``pixel_coords[:, 2]``)
    binned by :data:`CLEVR_DISTANCE_THRESHOLDS`."""
    depth = float(np.min(np.asarray(example["objects"]["pixel_coords"])[:, 2]))
    return _bin(depth, CLEVR_DISTANCE_THRESHOLDS)


def kitti_closest_vehicle_distance(example: Example) -> int:
    """KITTI ``closest_vehicle_distance``: the smallest depth (``location[:, 2]``) of a car,
    van or truck, 1,000 m when there is none, binned by :data:`KITTI_VEHICLE_THRESHOLDS`."""
    objects = example["objects"]
    types = np.asarray(objects["type"]).reshape(-1)
    depths = np.asarray(objects["location"], dtype=np.float64).reshape(-1, 3)[:, 2]
    vehicles = depths[types < KITTI_VEHICLE_TYPES]
    return _bin(float(np.min(np.append(vehicles, KITTI_NO_VEHICLE))), KITTI_VEHICLE_THRESHOLDS)


def binned_attribute(attribute: str, values: int, classes: int) -> Callable[[Example], int]:
    """dSprites: attribute value ``v`` of ``values`` grouped into ``classes`` classes as
    ``floor(v / (values / classes))``."""
    width = values / classes

    def recipe(example: Example) -> int:
        return math.floor(float(example[attribute]) / width)

    recipe.__name__ = f"{attribute}_in_{classes}"
    return recipe


def attribute(name: str) -> Callable[[Example], int]:
    """smallNORB: one of the example's label attributes as the class."""

    def recipe(example: Example) -> int:
        return int(example[name])

    recipe.__name__ = name
    return recipe


SplitRule = Callable[[Mapping[str, int]], dict[str, str]]
"""TFDS split sizes -> the TFDS split string of ``train800``, ``val200`` and ``test``."""


def _validation_split(sizes: Mapping[str, int]) -> dict[str, str]:
    """Datasets with a validation split: val200 is its first 200."""
    return {"train800": "train[:800]", "val200": "validation[:200]", "test": "test"}


def _held_out_of_train(percent: int, test: str = "test") -> SplitRule:
    """Datasets whose validation is the last ``100 - percent`` % of ``train``."""

    def rule(sizes: Mapping[str, int]) -> dict[str, str]:
        start = percent * sizes["train"] // 100
        return {"train800": "train[:800]", "val200": f"train[{start}:{start + 200}]", "test": test}

    return rule


def _train_only(train_percent: int, validation_percent: int) -> SplitRule:
    """Datasets with only ``train``: train, validation and test are its consecutive parts."""

    def rule(sizes: Mapping[str, int]) -> dict[str, str]:
        start = train_percent * sizes["train"] // 100
        test_start = start + validation_percent * sizes["train"] // 100
        return {
            "train800": "train[:800]",
            "val200": f"train[{start}:{start + 200}]",
            "test": f"train[{test_start}:]",
        }

    return rule


def _smallnorb_splits(sizes: Mapping[str, int]) -> dict[str, str]:
    return {"train800": "train[:800]", "val200": "test[:200]", "test": "test[50%:]"}


@dataclass(frozen=True)
class VtabTaskSpec:
    """One VTAB-1k task: ``tfds`` is the TFDS name and version task_adaptation loads,
    ``splits`` its split rule, ``recipe`` the label of an example, ``lite_tfds`` the name
    LITE loads (no version: the installed one) and ``lite_test`` LITE's test split
    (``None``: ``train[1000:]``, for datasets without a test split)."""

    name: str
    group: Literal["natural", "specialized", "structured"]
    tfds: str
    classes: int
    splits: SplitRule
    recipe: Callable[[Example], int] = label_of
    lite_tfds: str | None = None
    lite_test: str | None = "test"

    def lite_splits(self) -> dict[str, str]:
        """LITE's splits: the first 1,000 training images (SUN397: all, for its fill) and
        its test split."""
        train = "train" if self.name == "sun397" else "train[:1000]"
        return {"train": train, "test": self.lite_test or "train[1000:]"}


#: The 19 tasks of ``scripts/run_all_tasks.sh``, in its order; LITE evaluates all but dtd
#: (a Meta-Dataset source in VTAB+MD).
VTAB_TASKS: dict[str, VtabTaskSpec] = {
    spec.name: spec
    for spec in (
        VtabTaskSpec("caltech101", "natural", "caltech101:3.*.*", 102, _held_out_of_train(90),
                     lite_tfds="caltech101"),
        VtabTaskSpec("cifar100", "natural", "cifar100:3.*.*", 100, _held_out_of_train(90),
                     lite_tfds="cifar100"),
        VtabTaskSpec("dtd", "natural", "dtd:3.*.*", 47, _validation_split),
        VtabTaskSpec("oxford_flowers102", "natural", "oxford_flowers102:2.*.*", 102,
                     _validation_split, lite_tfds="oxford_flowers102"),
        VtabTaskSpec("oxford_iiit_pet", "natural", "oxford_iiit_pet:3.*.*", 37,
                     _held_out_of_train(80), lite_tfds="oxford_iiit_pet"),
        VtabTaskSpec("patch_camelyon", "specialized", "patch_camelyon:2.*.*", 2,
                     _validation_split, lite_tfds="patch_camelyon"),
        VtabTaskSpec("sun397", "natural", "sun397/tfds:4.*.*", 397, _validation_split,
                     lite_tfds="sun397/tfds"),
        VtabTaskSpec("svhn", "natural", "svhn_cropped:3.*.*", 10, _held_out_of_train(90),
                     lite_tfds="svhn_cropped"),
        VtabTaskSpec("resisc45", "specialized", "resisc45:3.*.*", 45, _train_only(60, 20),
                     lite_tfds="resisc45", lite_test=None),
        VtabTaskSpec("eurosat", "specialized", "eurosat/rgb:2.*.*", 10, _train_only(60, 20),
                     lite_tfds="eurosat", lite_test=None),
        VtabTaskSpec("dmlab", "structured", "dmlab:2.0.1", 6, _validation_split,
                     lite_tfds="dmlab"),
        VtabTaskSpec("kitti-distance", "structured", "kitti:3.1.0", 4, _validation_split,
                     kitti_closest_vehicle_distance, lite_tfds="kitti"),
        VtabTaskSpec("smallnorb-azimuth", "structured", "smallnorb:2.*.*", 18,
                     _smallnorb_splits, attribute("label_azimuth"), lite_tfds="smallnorb"),
        VtabTaskSpec("smallnorb-elevation", "structured", "smallnorb:2.*.*", 9,
                     _smallnorb_splits, attribute("label_elevation"), lite_tfds="smallnorb"),
        VtabTaskSpec("dsprites-location", "structured", "dsprites:2.*.*", 16,
                     _train_only(80, 10), binned_attribute("label_x_position", 32, 16),
                     lite_tfds="dsprites", lite_test=None),
        VtabTaskSpec("dsprites-orientation", "structured", "dsprites:2.*.*", 16,
                     _train_only(80, 10), binned_attribute("label_orientation", 40, 16),
                     lite_tfds="dsprites", lite_test=None),
        VtabTaskSpec("clevr-distance", "structured", "clevr:3.*.*", 6,
                     _held_out_of_train(90, test="validation"), clevr_closest_distance,
                     lite_tfds="clevr", lite_test="validation"),
        VtabTaskSpec("clevr-count", "structured", "clevr:3.*.*", 8,
                     _held_out_of_train(90, test="validation"), clevr_count,
                     lite_tfds="clevr", lite_test="validation"),
        VtabTaskSpec("diabetic_retinopathy", "specialized",
                     "diabetic_retinopathy_detection/btgraham-300:3.*.*", 5, _validation_split,
                     lite_tfds="diabetic_retinopathy_detection"),
    )
}  # fmt: skip


class TfdsReader(Protocol):
    """What the export needs of TensorFlow Datasets (a fake one in tests)."""

    def split_sizes(self, name: str) -> Mapping[str, int]:
        """Examples per split of TFDS dataset ``name``."""
        ...

    def examples(self, name: str, split: str) -> Iterable[Example]:
        """The examples of TFDS split string ``split`` (``train[:800]``...), in order."""
        ...


class TensorflowDatasets:
    """:class:`TfdsReader` on ``tensorflow_datasets`` (installed by the user; it downloads
    and prepares a dataset on first use, into ``data_dir``)."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        try:
            import tensorflow_datasets as tfds
        except ImportError:
            raise ImportError(
                "exporting VTAB needs TensorFlow Datasets: pip install tensorflow "
                "tensorflow-datasets (Diabetic Retinopathy and Resisc45 also need a manual "
                "download, see their TFDS catalogue pages)"
            ) from None
        self._tfds = tfds
        self.data_dir = None if data_dir is None else str(data_dir)

    def _builder(self, name: str) -> Any:
        try:
            builder = self._tfds.builder(name, data_dir=self.data_dir)
        except Exception as error:  # TFDS asserts on a version it does not have
            raise ValueError(
                f"TensorFlow Datasets cannot load {name}: {' '.join(str(error).split())}; "
                "to export the version installed instead of VTAB's, pass "
                "any_tfds_version=True (--any-tfds-version)"
            ) from error
        builder.download_and_prepare()
        return builder

    def split_sizes(self, name: str) -> Mapping[str, int]:
        splits = self._builder(name).info.splits
        return {split: splits[split].num_examples for split in splits}

    def examples(self, name: str, split: str) -> Iterable[Example]:
        dataset = self._builder(name).as_dataset(split=split, shuffle_files=False)
        return self._tfds.as_numpy(dataset)


def vtab_splits(
    spec: VtabTaskSpec, sizes: Mapping[str, int], protocol: Protocol_ = "vtab-1k"
) -> dict[str, str]:
    """Folder name -> TFDS split string of ``spec`` under ``protocol``."""
    return spec.splits(sizes) if protocol == "vtab-1k" else spec.lite_splits()


def _rgb(image: np.ndarray, name: str) -> np.ndarray:
    """An image as task_adaptation feeds it: grey images tiled to 3 channels, dSprites'
    0/1 pixels scaled to 0/255."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if name.startswith("dsprites"):
        image = image * 255
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image.astype(np.uint8)


def export_vtab_task(
    task: str,
    out: str | os.PathLike[str],
    *,
    protocol: Protocol_ = "vtab-1k",
    reader: TfdsReader | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    any_tfds_version: bool = False,
) -> dict[str, int]:
    """Write VTAB task ``task`` (a key of :data:`VTAB_TASKS`) as ``out/<split>/<label>/
    <index>.png`` and return the images written per split. ``reader`` defaults to
    :class:`TensorflowDatasets` on ``data_dir``. ``any_tfds_version`` loads the installed
    version where VTAB pins one that TFDS no longer has (``oxford_iiit_pet:3.*.*``: TFDS
    4.9 has only 4.0.0)."""
    if task not in VTAB_TASKS:
        raise ValueError(f"unknown VTAB task {task!r}; choose one of {sorted(VTAB_TASKS)}")
    if protocol not in ("vtab-1k", "lite"):
        raise ValueError(f"protocol must be 'vtab-1k' or 'lite', got {protocol!r}")
    spec = VTAB_TASKS[task]
    if protocol == "lite" and spec.lite_tfds is None:
        raise ValueError(f"LITE does not evaluate {task!r} (a Meta-Dataset source in VTAB+MD)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; give a new folder")
    reader = reader or TensorflowDatasets(data_dir)
    name = spec.tfds if protocol == "vtab-1k" else str(spec.lite_tfds)
    if any_tfds_version:
        name = name.split(":")[0]
    digits = len(str(spec.classes - 1))
    written = {}
    for folder, split in vtab_splits(spec, reader.split_sizes(name), protocol).items():
        count = 0
        for index, example in enumerate(reader.examples(name, split)):
            label = spec.recipe(example)
            if not 0 <= label < spec.classes:
                raise ValueError(
                    f"{task}: example {index} of {split} has label {label}, outside "
                    f"0..{spec.classes - 1}; is {name} the TFDS version VTAB uses?"
                )
            target = out / folder / f"{label:0{digits}d}"
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(example["image"], task)).save(target / f"{index:07d}.png")
            count += 1
        written[folder] = count
    return written
