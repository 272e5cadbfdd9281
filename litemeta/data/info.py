"""Summaries of a dataset on disk: classes, images, styles, splits and image sizes."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from PIL import Image

from litemeta.data.base import ImageCollection
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.emoji import load_emoji
from litemeta.data.images import ImageLoadError
from litemeta.data.metadataset import SPEC_FILE, MetaDatasetRecords, read_dataset_spec
from litemeta.data.orbit import VIDEO_TYPES, OrbitDataset

ORBIT_SPLITS = ("train", "validation", "test")
SIZE_SAMPLE = 64
VERIFY_SIZE = 8  # decode fully, then resize small: the check is the decoding


def _sizes(sizes: Counter) -> str:
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
    sizes: Counter = Counter()
    step = max(1, collection.num_classes // SIZE_SAMPLE)
    for class_id in range(0, collection.num_classes, step):
        try:
            with Image.open(io.BytesIO(collection.encoded_bytes(class_id, 0))) as image:
                sizes[image.size] += 1
        except Exception:  # an unreadable sample is for --verify to report, not a size
            continue
    lines.append(f"image sizes (sampled): {_sizes(sizes)}")
    return lines


def unreadable_images(collection: ImageCollection) -> list[str]:
    """Decode every image of ``collection`` (at its decode size: build it with
    ``decode_size=VERIFY_SIZE`` to keep each decoded image small); the errors of those that
    fail, one per image."""
    errors = []
    for class_id in range(collection.num_classes):
        for item in range(collection.num_items(class_id)):
            try:
                collection.read_item(class_id, item)
            except ImageLoadError as error:
                errors.append(str(error))
    return errors


def _verify_lines(collections: list[ImageCollection]) -> list[str]:
    errors = [error for collection in collections for error in unreadable_images(collection)]
    total = sum(c.num_items(i) for c in collections for i in range(c.num_classes))
    if not errors:
        return [f"verified: all {total} images decode"]
    return [f"unreadable: {len(errors)} of {total} images", *(f"  {e}" for e in errors)]


def _orbit_lines(root: Path) -> list[str]:
    lines = []
    for split in ORBIT_SPLITS:
        if not (root / split).is_dir():
            continue
        dataset = OrbitDataset(root, split)
        videos = Counter(v.video_type for v in dataset.index.videos)
        frames = sum(dataset.num_items(c) for c in range(dataset.num_classes))
        with Image.open(dataset.item_source(0, 0)) as image:
            size = image.size
        video_text = ", ".join(f"{videos[t]} {t}" for t in VIDEO_TYPES)
        lines.append(
            f"{split}: {len(dataset.index.users)} users, {dataset.num_classes} objects, "
            f"videos {video_text}, {frames} frames, first frame {size[0]}x{size[1]}"
        )
    return lines


def _metadataset_lines(root: Path) -> list[str]:
    spec = read_dataset_spec(root / SPEC_FILE)
    lines = []
    for split, class_ids in spec.classes_per_split.items():
        images = sum(spec.images_per_class.get(c, 0) for c in class_ids)
        lines.append(f"{split.lower()}: {len(class_ids)} classes, {images} images")
    first_split = next(s for s, ids in spec.classes_per_split.items() if ids)
    records = MetaDatasetRecords(root, split=first_split)
    with Image.open(io.BytesIO(records.read_example(0, 0)["image"][0])) as image:
        lines.append(f"first image: {image.size[0]}x{image.size[1]}")
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
    if (root / SPEC_FILE).is_file():
        lines = [f"Meta-Dataset records: {root}", *_metadataset_lines(root)]
        if verify:
            spec = read_dataset_spec(root / SPEC_FILE)
            splits = [s for s, ids in spec.classes_per_split.items() if ids]
            lines += _verify_lines(
                [MetaDatasetRecords(root, split=s, decode_size=VERIFY_SIZE) for s in splits]
            )
        return "\n".join(lines)
    if root.is_dir() and any(
        any((root / s).glob(f"*/*/{t}")) for s in ORBIT_SPLITS for t in VIDEO_TYPES
    ):
        lines = [f"ORBIT: {root}", *_orbit_lines(root)]
        if verify:
            splits = [s for s in ORBIT_SPLITS if (root / s).is_dir()]
            lines += _verify_lines([OrbitDataset(root, s, decode_size=VERIFY_SIZE) for s in splits])
        return "\n".join(lines)
    collection = ClassFolderDataset(root, decode_size=VERIFY_SIZE)
    lines = [f"class folders: {root}", *_class_folder_lines(collection)]
    return "\n".join(lines + (_verify_lines([collection]) if verify else []))
