"""Summaries of a dataset on disk: classes, images, styles, splits and image sizes."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from litemeta.data.base import ImageCollection
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.emoji import load_emoji
from litemeta.data.images import ImageLoadError, read_image_bytes
from litemeta.data.metadataset import (
    SPEC_FILE,
    MetaDatasetRecords,
    check_not_bare_records,
    read_dataset_spec,
)
from litemeta.data.orbit import VIDEO_TYPES, OrbitDataset
from litemeta.data.tfrecord import CorruptRecordError

ORBIT_SPLITS = ("train", "validation", "test")
SIZE_SAMPLE = 64
VERIFY_SIZE = 8  # decode fully, then resize small: the check is the decoding


def _encoded(collection: ImageCollection, class_id: int, item: int) -> bytes:
    """The stored (encoded) bytes of an image."""
    if isinstance(collection, MetaDatasetRecords):
        return collection.read_example(class_id, item)["image"][0]
    if isinstance(collection, ClassFolderDataset):
        return collection.encoded_bytes(class_id, item)
    return read_image_bytes(collection.item_source(class_id, item))


def _sampled_sizes(collections: Sequence[ImageCollection]) -> str:
    """The stored sizes of the first image of up to about ``SIZE_SAMPLE`` classes, most
    common first; unreadable images are skipped (``--verify`` lists them)."""
    classes = [(c, class_id) for c in collections for class_id in range(c.num_classes)]
    sizes: Counter = Counter()
    for collection, class_id in classes[:: max(1, len(classes) // SIZE_SAMPLE)]:
        try:
            with Image.open(io.BytesIO(_encoded(collection, class_id, 0))) as image:
                sizes[image.size] += 1
        except Exception:  # an unreadable sample is for --verify to report, not a size
            continue
    if not sizes:
        return "none readable (--verify lists the images that cannot be read)"
    return ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))


def _class_folder_lines(collection: ClassFolderDataset) -> list[str]:
    counts = [collection.num_items(c) for c in range(collection.num_classes)]
    lines = [
        f"classes: {collection.num_classes}",
        f"images: {sum(counts)} ({min(counts)}-{max(counts)} per class)",
    ]
    styles = collection.styles()
    if styles:
        named = [style or "(none: directly in the class folder)" for style in styles]
        lines.append(f"styles: {len(styles)}: {', '.join(named)}")
    if collection.num_classes == 1 and styles:
        only = collection.class_names[0]
        lines.append(
            f"note: one class folder, {only!r}, holding sub-folders; if {only!r} only wraps "
            "the class folders, point at it instead (for a zip, zip the class folders "
            "themselves)"
        )
    if collection.splits:
        lines.append("splits: " + ", ".join(f"{k} {len(v)}" for k, v in collection.splits.items()))
    lines.append(f"image sizes (sampled): {_sampled_sizes([collection])}")
    return lines


def _whole_class(collection: ImageCollection, class_id: int) -> tuple[int, str | None]:
    """The number of images of a class, and the error that stops all of them at once, if
    any: a Meta-Dataset class file that is missing, damaged or holds another number of
    records than the spec says (counted as the records present, or else the spec's)."""
    if not isinstance(collection, MetaDatasetRecords):
        return collection.num_items(class_id), None
    try:
        return sum(len(rows) for _, rows in collection.index_class(class_id)), None
    except (FileNotFoundError, CorruptRecordError) as error:
        try:
            found = collection.records_found(class_id)
        except (FileNotFoundError, CorruptRecordError):
            found = collection.spec.images_per_class.get(collection.class_ids[class_id], 0)
        return found, str(error)


def unreadable_images(collection: ImageCollection) -> tuple[int, Counter[str]]:
    """Decode every image of ``collection`` (at its decode size: build it with
    ``decode_size=VERIFY_SIZE`` to keep each decoded image small): the number of images,
    and each distinct error with the number of images it affects."""
    total, errors = 0, Counter[str]()
    for class_id in range(collection.num_classes):
        count, whole_class_error = _whole_class(collection, class_id)
        total += count
        if whole_class_error is not None:
            errors[whole_class_error] += count
            continue
        for item in range(count):
            try:
                collection.read_item(class_id, item)
            except ImageLoadError as error:
                errors[str(error)] += 1
    return total, errors


def _verify_lines(collections: Sequence[ImageCollection]) -> list[str]:
    total, errors = 0, Counter[str]()
    for collection in collections:
        images, found = unreadable_images(collection)
        total += images
        errors.update(found)
    if not errors:
        return [f"verified: all {total} images decode"]
    listed = [f"  {error}" + (f" ({n} images)" if n != 1 else "") for error, n in errors.items()]
    return [f"unreadable: {sum(errors.values())} of {total} images", *listed]


def _orbit_line(split: str, dataset: OrbitDataset) -> str:
    videos = Counter(v.video_type for v in dataset.index.videos)
    frames = sum(dataset.num_items(c) for c in range(dataset.num_classes))
    video_text = ", ".join(f"{videos[t]} {t}" for t in VIDEO_TYPES)
    return (
        f"{split}: {len(dataset.index.users)} users, {dataset.num_classes} objects, "
        f"videos {video_text}, {frames} frames, frame sizes (sampled) {_sampled_sizes([dataset])}"
    )


def _metadataset_lines(records: list[MetaDatasetRecords]) -> list[str]:
    spec = records[0].spec
    lines = []
    for split, class_ids in spec.classes_per_split.items():
        images = sum(spec.images_per_class.get(c, 0) for c in class_ids)
        lines.append(f"{split.lower()}: {len(class_ids)} classes, {images} images")
    missing = []
    for collection in records:
        for class_id in collection.class_ids:
            try:
                collection.class_files(class_id)
            except FileNotFoundError:
                missing.append(f"{class_id} ({spec.class_names.get(class_id, 'unnamed')})")
    if missing:
        more = ", ..." if len(missing) > 5 else ""
        lines.append(
            f"missing: no record file for {len(missing)} classes: {', '.join(missing[:5])}"
            f"{more} (file pattern {spec.file_pattern!r}); the conversion is incomplete"
        )
    lines.append(f"image sizes (sampled): {_sampled_sizes(records)}")
    return lines


def describe(dataset: str, verify: bool = False) -> str:
    """A text summary of ``dataset``: ``'emoji'``, class folders (dir or zip), an ORBIT
    root or a Meta-Dataset records directory. ``verify`` decodes every image and lists
    those that fail."""
    if dataset == "emoji":
        collection = load_emoji(split=None, decode_size=VERIFY_SIZE)
        lines = [f"built-in emoji set ({collection.tree.root})", *_class_folder_lines(collection)]
        return "\n".join(lines + (_verify_lines([collection]) if verify else []))
    root = Path(dataset)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass 'emoji' or a dataset path")
    check_not_bare_records(root)
    if (root / SPEC_FILE).is_file():
        spec = read_dataset_spec(root / SPEC_FILE)
        splits = [s for s, ids in spec.classes_per_split.items() if ids]
        if not splits:
            raise ValueError(f"{root / SPEC_FILE} lists no classes in any split")
        records = [MetaDatasetRecords(root, split=s, decode_size=VERIFY_SIZE) for s in splits]
        lines = [f"Meta-Dataset records: {root}", *_metadataset_lines(records)]
        return "\n".join(lines + (_verify_lines(records) if verify else []))
    if root.is_dir() and any(
        any((root / s).glob(f"*/*/{t}")) for s in ORBIT_SPLITS for t in VIDEO_TYPES
    ):
        splits = [s for s in ORBIT_SPLITS if (root / s).is_dir()]
        datasets = [OrbitDataset(root, s, decode_size=VERIFY_SIZE) for s in splits]
        lines = [f"ORBIT: {root}", *map(_orbit_line, splits, datasets)]
        return "\n".join(lines + (_verify_lines(datasets) if verify else []))
    collection = ClassFolderDataset(root, decode_size=VERIFY_SIZE)
    lines = [f"class folders: {root}", *_class_folder_lines(collection)]
    return "\n".join(lines + (_verify_lines([collection]) if verify else []))
