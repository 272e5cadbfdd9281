"""Summaries of a dataset on disk (``litemeta data info``): classes, images, styles, splits
and image sizes, each written by the dataset's kind (:mod:`litemeta.data.kinds`) with the
helpers here."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from litemeta.data.base import ImageCollection
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.images import ImageLoadError
from litemeta.data.registry import dataset_kinds

SIZE_SAMPLE = 64
VERIFY_SIZE = 8  # decode fully, then resize small: the check is the decoding


def sampled_sizes(collections: Sequence[ImageCollection]) -> str:
    """The stored sizes of the first image of up to about ``SIZE_SAMPLE`` classes, most
    common first; unreadable images are skipped (``--verify`` lists them)."""
    classes = [(c, class_id) for c in collections for class_id in range(c.num_classes)]
    sizes: Counter = Counter()
    for collection, class_id in classes[:: max(1, len(classes) // SIZE_SAMPLE)]:
        try:
            with Image.open(io.BytesIO(collection.encoded_bytes(class_id, 0))) as image:
                sizes[image.size] += 1
        except Exception:  # an unreadable sample is for --verify to report, not a size
            continue
    if not sizes:
        return "none readable (--verify lists the images that cannot be read)"
    return ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))


def class_folder_lines(collection: ClassFolderDataset) -> list[str]:
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
    lines.append(f"image sizes (sampled): {sampled_sizes([collection])}")
    return lines


def unreadable_images(collection: ImageCollection) -> tuple[int, Counter[str]]:
    """Decode every image of ``collection`` (at its decode size: build it with
    ``decode_size=VERIFY_SIZE`` to keep each decoded image small): the number of images,
    and each distinct error with the number of images it affects."""
    total, errors = 0, Counter[str]()
    for class_id in range(collection.num_classes):
        count, whole_class_error = collection.class_size(class_id)
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


def verify_lines(collections: Sequence[ImageCollection]) -> list[str]:
    total, errors = 0, Counter[str]()
    for collection in collections:
        images, found = unreadable_images(collection)
        total += images
        errors.update(found)
    if not errors:
        return [f"verified: all {total} images decode"]
    listed = [f"  {error}" + (f" ({n} images)" if n != 1 else "") for error, n in errors.items()]
    return [f"unreadable: {sum(errors.values())} of {total} images", *listed]


def describe(dataset: str, verify: bool = False) -> str:
    """A text summary of ``dataset``: ``'emoji'``, class folders (dir or zip), an ORBIT
    root, a Meta-Dataset records directory, or any other registered kind's dataset; the
    first kind (:mod:`litemeta.data.registry`, in ``detect_order``) that recognises it
    describes it. ``verify`` decodes every image and lists those that fail."""
    kinds = sorted(dataset_kinds().values(), key=lambda kind: kind.detect_order)
    for kind in kinds:
        if kind.detect(dataset):
            return kind.describe(dataset, verify)
    if not Path(dataset).exists():
        raise FileNotFoundError(f"{dataset} does not exist; pass 'emoji' or a dataset path")
    raise ValueError(
        f"{dataset} is no dataset of a known kind ({', '.join(d.name for d in kinds)}); "
        "see docs/data.md"
    )
