"""Meta-Dataset's converted records (Triantafillou et al., ICLR 2020), read without TensorFlow.

A dataset directory holds one TFRecord file per class (``{class_id}.tfrecords``, or
shards ``{class_id}_{shard}.tfrecords``) of ``tf.train.Example`` records with ``image``
(encoded JPEG/PNG bytes) and ``label`` (int64 class id), and a ``dataset_spec.json``.
Class ids are contiguous per split: train, then validation, then test.

Records are read by random access: each class file is indexed once (record offsets)
and records are then read with a seek, so the sampler's choice of images within a class
is truly random, unlike readers that stream a shuffle buffer over a rotating file. At
most ``max_open_files`` handles are kept open (least recently used are closed).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

from litemeta.data.base import ImageCollection
from litemeta.data.example_proto import ProtobufDecodeError, parse_example
from litemeta.data.images import decode_image
from litemeta.data.samplers import ClassHierarchy
from litemeta.data.tfrecord import (
    HEADER_BYTES,
    CorruptRecordError,
    OpenFiles,
    index_records,
    read_record,
)

SPEC_FILE = "dataset_spec.json"
SPLIT_ALIASES = {
    "train": "TRAIN",
    "training": "TRAIN",
    "valid": "VALID",
    "validation": "VALID",
    "val": "VALID",
    "test": "TEST",
}
SPLIT_ORDER = ("TRAIN", "VALID", "TEST")


@dataclass(frozen=True)
class MetaDatasetSpec:
    """What ``dataset_spec.json`` says: class ids, names and image counts per split, and
    for bi-level and hierarchical specs each split's class hierarchy (in dataset class ids)."""

    name: str
    file_pattern: str
    classes_per_split: dict[str, list[int]]
    class_names: dict[int, str]
    images_per_class: dict[int, int]
    hierarchies: dict[str, ClassHierarchy] = field(default_factory=dict)


def _split_key(split: str) -> str:
    key = SPLIT_ALIASES.get(split.lower(), split.upper())
    if key not in SPLIT_ORDER:
        raise ValueError(f"unknown split {split!r}; use train, validation or test")
    return key


def _contiguous(counts: dict[str, int]) -> dict[str, list[int]]:
    splits, offset = {}, 0
    for key in SPLIT_ORDER:
        splits[key] = list(range(offset, offset + counts.get(key, 0)))
        offset += counts.get(key, 0)
    return splits


def _spanned_leaves(nodes: list[dict], path: str | os.PathLike[str]) -> dict[str, frozenset[str]]:
    """The leaves (nodes without children) each node of a split's subgraph reaches."""
    children = {node["wn_id"]: list(node.get("children_ids") or []) for node in nodes}
    missing = sorted({c for kids in children.values() for c in kids} - set(children))
    if missing:
        raise ValueError(
            f"{path}: split subgraph nodes name children {missing[:5]} that are not in the "
            "same split; regenerate the dataset spec"
        )
    spanned: dict[str, frozenset[str]] = {}
    visiting: set[str] = set()

    def reach(wn_id: str) -> frozenset[str]:
        if wn_id not in spanned:
            if wn_id in visiting:
                raise ValueError(f"{path}: the class graph has a cycle through {wn_id!r}")
            visiting.add(wn_id)
            kids = children[wn_id]
            spanned[wn_id] = frozenset().union(*map(reach, kids)) if kids else frozenset([wn_id])
            visiting.discard(wn_id)
        return spanned[wn_id]

    for wn_id in children:
        reach(wn_id)
    return spanned


def _dag_hierarchy(
    nodes: list[dict], ids_of_name: dict[str, int], path: str | os.PathLike[str]
) -> ClassHierarchy:
    """One group per internal node, in ``wn_id`` order, of the class ids it spans."""
    spanned = _spanned_leaves(nodes, path)
    groups = tuple(
        tuple(sorted(ids_of_name[leaf] for leaf in spanned[wn_id]))
        for wn_id in sorted(spanned)
        if spanned[wn_id] != {wn_id}
    )
    return ClassHierarchy("dag", groups)


def _spec_error(path: str | os.PathLike[str], key: str, expected: str, found: object) -> ValueError:
    shown = repr(found) if len(repr(found)) <= 60 else repr(found)[:57] + "..."
    shown = "nothing (missing or null)" if found is None else shown
    return ValueError(
        f"{path}: {key} must be {expected}, got {shown}; fix the file or regenerate it with "
        "Meta-Dataset's conversion script"
    )


def _read_json_object(path: str | os.PathLike[str]) -> dict:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise FileNotFoundError(
            f"cannot read {path}: {error}. A Meta-Dataset records directory needs the "
            f"{SPEC_FILE} written by its conversion script"
        ) from error
    except ValueError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); fix the file or regenerate it with "
            "Meta-Dataset's conversion script"
        ) from error
    return _object(raw, path, "the file")


def _object(value: object, path: str | os.PathLike[str], key: str) -> dict:
    if not isinstance(value, dict):
        raise _spec_error(path, key, "a JSON object", value)
    return value


def _count(value: object, path: str | os.PathLike[str], key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _spec_error(path, key, "a whole number >= 0", value)
    return value


def _by_class_id(value: object, path: str | os.PathLike[str], key: str) -> dict[int, object]:
    """A JSON object keyed by class ids (``"0"``, ``"1"``, ...) with int keys."""
    by_id = {}
    for class_id, entry in _object(value, path, key).items():
        if not (class_id.isascii() and class_id.isdigit()):
            raise _spec_error(path, f"a key of {key}", "a class id (a whole number)", class_id)
        by_id[int(class_id)] = entry
    return by_id


def _per_split(raw: dict, path: str | os.PathLike[str], key: str) -> dict[str, object]:
    """``raw[key]`` keyed by split (``TRAIN``, ``VALID``, ``TEST``, or ``Split.TRAIN`` ...)."""
    per_split = {}
    for name, value in _object(raw.get(key), path, key).items():
        split = name.split(".")[-1].upper()
        if split not in SPLIT_ORDER:
            raise _spec_error(path, f"a key of {key}", "TRAIN, VALID or TEST", name)
        per_split[split] = value
    return per_split


def _split_counts(raw: dict, path: str | os.PathLike[str], key: str) -> dict[str, int]:
    return {
        split: _count(value, path, f"{key}[{split!r}]")
        for split, value in _per_split(raw, path, key).items()
    }


def _flat_images(raw: dict, path: str | os.PathLike[str]) -> dict[int, int]:
    images = {}
    for class_id, count in _by_class_id(
        raw.get("images_per_class", {}), path, "images_per_class"
    ).items():
        if isinstance(count, dict):
            raise ValueError(
                f"{path}: class {class_id} has example-level pools {list(count)}; "
                "pooled datasets are not supported"
            )
        images[class_id] = _count(count, path, f"images_per_class[{str(class_id)!r}]")
    return images


def _bilevel_splits(
    raw: dict, path: str | os.PathLike[str]
) -> tuple[dict[str, list[int]], dict[str, ClassHierarchy]]:
    """Each split's class ids and superclass groups: superclasses and their classes are
    numbered contiguously, train first."""
    per_super = {
        superclass: _count(count, path, f"classes_per_superclass[{str(superclass)!r}]")
        for superclass, count in _by_class_id(
            raw.get("classes_per_superclass"), path, "classes_per_superclass"
        ).items()
    }
    super_counts = _split_counts(raw, path, "superclasses_per_split")
    counts, hierarchies, first_class = {}, {}, 0
    superclasses = iter(range(sum(super_counts.values())))
    for key in SPLIT_ORDER:
        groups = []
        for superclass in itertools.islice(superclasses, super_counts.get(key, 0)):
            if superclass not in per_super:
                raise ValueError(
                    f"{path}: classes_per_superclass has no entry for superclass {superclass}; "
                    f"expected a count for each of the {sum(super_counts.values())} "
                    "superclasses of superclasses_per_split"
                )
            groups.append(tuple(range(first_class, first_class + per_super[superclass])))
            first_class += per_super[superclass]
        counts[key] = sum(len(group) for group in groups)
        if groups:
            hierarchies[key] = ClassHierarchy("bilevel", tuple(groups))
    return _contiguous(counts), hierarchies


def _nodes(value: object, path: str | os.PathLike[str], key: str) -> list[dict]:
    """A split subgraph: a list of ``{"wn_id": str, "children_ids": [str, ...]}`` nodes."""
    if not isinstance(value, list):
        raise _spec_error(path, key, "a list of nodes", value)
    for node in value:
        children = node.get("children_ids") if isinstance(node, dict) else None
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("wn_id"), str)
            or not (children is None or isinstance(children, list))
        ):
            raise _spec_error(
                path, f"a node of {key}", '{"wn_id": ..., "children_ids": [...]}', node
            )
    return value


def _hierarchical_splits(
    raw: dict, class_names: dict[int, str], path: str | os.PathLike[str]
) -> tuple[dict[str, list[int]], dict[int, int], dict[str, ClassHierarchy]]:
    """Each split's class ids (its subgraph's leaves), the images of each class, and each
    split's DAG hierarchy."""
    ids_of_name = {name: class_id for class_id, name in class_names.items()}
    per_split_images = _per_split(raw, path, "images_per_class")
    counts, images, hierarchies = {}, {}, {}
    for key, value in _per_split(raw, path, "split_subgraphs").items():
        nodes = _nodes(value, path, f"split_subgraphs[{key!r}]")
        split_images = _object(per_split_images.get(key), path, f"images_per_class[{key!r}]")
        leaves = [n["wn_id"] for n in nodes if not n.get("children_ids")]
        for leaf in leaves:
            if leaf not in ids_of_name or leaf not in split_images:
                where = "class_names" if leaf not in ids_of_name else f"images_per_class[{key!r}]"
                raise ValueError(
                    f"{path}: {where} has no entry for {leaf!r}, a leaf of "
                    f"split_subgraphs[{key!r}]; expected each leaf's class id in class_names "
                    "and its image count in images_per_class"
                )
            images[ids_of_name[leaf]] = _count(
                split_images[leaf], path, f"images_per_class[{key!r}][{leaf!r}]"
            )
        counts[key] = len(leaves)
        if len(leaves) < len(nodes):
            hierarchies[key] = _dag_hierarchy(nodes, ids_of_name, path)
    return _contiguous(counts), images, hierarchies


def read_dataset_spec(path: str | os.PathLike[str]) -> MetaDatasetSpec:
    """Parse a Meta-Dataset ``dataset_spec.json`` (flat, bi-level or hierarchical); a file
    of the wrong shape raises one ``ValueError`` naming it, the key and what is expected."""
    raw = _read_json_object(path)
    kind = raw.get("__class__", "DatasetSpecification")
    names = _by_class_id(raw.get("class_names", {}), path, "class_names")
    class_names = {class_id: str(name) for class_id, name in names.items()}
    hierarchies: dict[str, ClassHierarchy] = {}
    if kind == "HierarchicalDatasetSpecification":
        classes, images, hierarchies = _hierarchical_splits(raw, class_names, path)
    elif kind == "BiLevelDatasetSpecification":
        images = _flat_images(raw, path)
        classes, hierarchies = _bilevel_splits(raw, path)
    elif kind == "DatasetSpecification":
        images = _flat_images(raw, path)
        classes = _contiguous(_split_counts(raw, path, "classes_per_split"))
    else:
        raise ValueError(f"{path}: unknown dataset specification class {kind!r}")
    file_pattern = raw.get("file_pattern", "{}.tfrecords")
    if not isinstance(file_pattern, str) or "{}" not in file_pattern:
        raise _spec_error(
            path, "file_pattern", 'a file name with "{}" for the class id', file_pattern
        )
    return MetaDatasetSpec(
        name=str(raw.get("name", Path(path).parent.name)),
        file_pattern=file_pattern,
        classes_per_split=classes,
        class_names=class_names,
        images_per_class=images,
        hierarchies=hierarchies,
    )


def check_not_bare_records(root: Path) -> None:
    """Refuse a folder of ``*.tfrecords`` without its ``dataset_spec.json``, which would
    otherwise be read as class folders without images."""
    if root.is_dir() and not (root / SPEC_FILE).is_file() and any(root.glob("*.tfrecords")):
        raise FileNotFoundError(
            f"{root} holds .tfrecords files but no {SPEC_FILE}: a Meta-Dataset records "
            f"folder needs the {SPEC_FILE} that the conversion script writes beside them; "
            "copy it there"
        )


class MetaDatasetRecords(ImageCollection):
    """One Meta-Dataset source's split as an image collection over its TFRecord files.

    ``verify_crc`` checks each record's data checksum when it is read (on by default; see
    docs/benchmarks.md for its cost); length checksums are always checked while indexing.
    Every malformed record raises :class:`CorruptRecordError` naming the file and offset,
    which ``on_error='skip'`` skips like any unreadable image. Images come at their stored
    size, or resized to ``decode_size`` square as they are decoded (Meta-Dataset's images
    differ in size, so tasks need one).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        on_error: str = "raise",
        max_open_files: int = 32,
        verify_crc: bool = True,
        decode_size: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Meta-Dataset records directory {self.root} does not exist; point to one "
                "source's folder (e.g. records/omniglot) holding *.tfrecords and "
                f"{SPEC_FILE}"
            )
        self.spec = read_dataset_spec(self.root / SPEC_FILE)
        self.split = _split_key(split)
        self.class_ids = self.spec.classes_per_split[self.split]
        if not self.class_ids:
            raise ValueError(f"{self.spec.name} has no classes in split {split!r}")
        names = [self.spec.class_names.get(c, str(c)) for c in self.class_ids]
        super().__init__(self.spec.name, names, on_error, decode_size)
        self.verify_crc = verify_crc
        self.files = OpenFiles(max_open_files)
        self._index: dict[int, list[tuple[str, np.ndarray]]] = {}

    @property
    def hierarchy(self) -> ClassHierarchy | None:
        """The split's class hierarchy in this collection's class ids (ImageNet's WordNet
        DAG, Omniglot's alphabets), for ``VariableWaySampler(hierarchy=...)``; ``None`` for
        a flat spec."""
        found = self.spec.hierarchies.get(self.split)
        if found is None:
            return None
        local = {class_id: index for index, class_id in enumerate(self.class_ids)}
        outside = sorted({c for group in found.groups for c in group} - set(local))
        if outside:
            raise ValueError(
                f"{SPEC_FILE} of {self.spec.name} puts classes {outside[:5]} in the "
                f"{self.split} hierarchy but not in its class range; regenerate the spec"
            )
        groups = tuple(tuple(local[c] for c in group) for group in found.groups)
        return ClassHierarchy(found.kind, groups)

    def class_files(self, class_id: int) -> list[str]:
        """The record files of a dataset class id (shards in order)."""
        pattern = self.spec.file_pattern
        if pattern.count("{}") == 1:
            path = self.root / pattern.format(class_id)
            files = [str(path)] if path.is_file() else []
        else:
            glob = pattern.replace("{}", str(class_id), 1).replace("{}", "*")
            files = sorted(str(p) for p in self.root.glob(glob))
        if not files:
            raise FileNotFoundError(
                f"no record file for class {class_id} ({self.spec.class_names.get(class_id)}) "
                f"matching {pattern!r} in {self.root}; the conversion is incomplete"
            )
        return files

    def _shards(self, local_id: int) -> list[tuple[str, np.ndarray]]:
        return [(path, index_records(path)) for path in self.class_files(self.class_ids[local_id])]

    def records_found(self, local_id: int) -> int:
        """How many records the class's files hold, whatever the spec says; raises like
        reading does for a missing or damaged file."""
        return sum(len(rows) for _, rows in self._shards(local_id))

    def index_class(self, local_id: int) -> list[tuple[str, np.ndarray]]:
        """The class's ``(file, record offsets and lengths)``, indexed once; a count that
        differs from the spec's raises :class:`CorruptRecordError`."""
        if local_id not in self._index:
            class_id = self.class_ids[local_id]
            shards = self._shards(local_id)
            found = sum(len(rows) for _, rows in shards)
            expected = self.spec.images_per_class.get(class_id)
            if expected is not None and found != expected:
                raise CorruptRecordError(
                    f"class {class_id} has {found} records in {[p for p, _ in shards]} but "
                    f"{SPEC_FILE} says {expected}; regenerate the records or the spec"
                )
            self._index[local_id] = shards
        return self._index[local_id]

    def num_items(self, class_id: int) -> int:
        count = self.spec.images_per_class.get(self.class_ids[class_id])
        if count is None:
            count = sum(len(rows) for _, rows in self.index_class(class_id))
        return count

    def _locate(self, class_id: int, item: int) -> tuple[str, int, int]:
        for path, rows in self.index_class(class_id):
            if item < len(rows):
                return path, int(rows[item, 0]), int(rows[item, 1])
            item -= len(rows)
        raise IndexError(f"item {item} out of range for class {self.class_names[class_id]!r}")

    def item_source(self, class_id: int, item: int) -> str:
        path, offset, _ = self._locate(class_id, item)
        return f"{path}@{offset - HEADER_BYTES}"

    def read_example(self, class_id: int, item: int) -> dict:
        path, offset, length = self._locate(class_id, item)
        source = f"{path}@{offset - HEADER_BYTES}"
        try:
            data = read_record(self.files.get(path), offset, length, self.verify_crc, source)
            example = parse_example(data)
        except CorruptRecordError:
            raise
        except (ProtobufDecodeError, OSError) as error:
            raise CorruptRecordError(f"cannot read record {source}: {error}") from error
        label = example.get("label", [])
        if label and label[0] != self.class_ids[class_id]:
            raise CorruptRecordError(
                f"record {source} has label {label[0]} but lies in the file of class "
                f"{self.class_ids[class_id]}; the records are mislabelled"
            )
        image = example.get("image")
        if not image or not isinstance(image[0], bytes):
            raise CorruptRecordError(f"record {source} has no 'image' bytes feature")
        return example

    def encoded_bytes(self, class_id: int, item: int) -> bytes:
        return self.read_example(class_id, item)["image"][0]

    def class_size(self, class_id: int) -> tuple[int, str | None]:
        """The images of a class, counted as its records, and the error of a class file
        that is missing, damaged or holds another number of records than the spec says
        (then counted as the records present, or else the spec's)."""
        try:
            return sum(len(rows) for _, rows in self.index_class(class_id)), None
        except (FileNotFoundError, CorruptRecordError) as error:
            try:
                found = self.records_found(class_id)
            except (FileNotFoundError, CorruptRecordError):
                found = self.spec.images_per_class.get(self.class_ids[class_id], 0)
            return found, str(error)

    def read_item(self, class_id: int, item: int) -> Tensor:
        example = self.read_example(class_id, item)
        source = self.item_source(class_id, item)
        return decode_image(example["image"][0], self.decode_size, source)

    def index_all(self) -> None:
        """Index every class file now (checks counts and framing up front)."""
        for local_id in range(self.num_classes):
            self.index_class(local_id)
