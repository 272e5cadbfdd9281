import json
import zipfile

import torch

from litemeta.data.emoji import BUILTIN_ARCHIVE, BUILTIN_DIR, STYLES, emoji_tasks, load_emoji
from litemeta.data.samplers import FixedWaySampler


def test_builtin_set_is_shipped_and_loads_offline():
    size = sum(p.stat().st_size for p in BUILTIN_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20
    assert (BUILTIN_DIR / "ATTRIBUTION.md").is_file()
    with zipfile.ZipFile(BUILTIN_ARCHIVE) as archive:
        splits = json.loads(archive.read("splits.json"))
        metadata = {m["folder"]: m for m in json.loads(archive.read("classes.json"))}
    assert sum(len(v) for v in splits.values()) >= 1000
    categories = {s: {metadata[f]["category"] for f in v} for s, v in splits.items()}
    assert not categories["train"] & categories["validation"]
    assert not categories["train"] & categories["test"]
    assert not categories["validation"] & categories["test"]
    train = load_emoji("train")
    assert train.styles() == sorted(STYLES)
    assert all(train.num_items(c) == len(STYLES) for c in range(0, train.num_classes, 97))


def test_emoji_tasks_with_style_transfer():
    tasks = emoji_tasks(
        "validation",
        decode_size=32,
        num_tasks=2,
        sampler=FixedWaySampler(way=5, shot=3, query=2),
        support_styles=["google", "twitter", "openmoji"],
        query_styles=["fluent-3d", "fluent-flat"],
    )
    task = tasks[1]
    assert task.support_images.shape == (15, 3, 32, 32)
    assert task.query_images.shape == (10, 3, 32, 32)
    assert task.support_images.dtype == torch.uint8
    spec, collection = tasks.spec(1), tasks.collection
    assert task.class_names == [collection.class_names[c] for c in spec.classes]

    def styles(pairs):
        return {collection.item_styles(spec.classes[label])[item] for label, item in pairs}

    assert styles(spec.support) == {"google", "twitter", "openmoji"}  # 3 shots: one each
    assert styles(spec.query) <= {"fluent-3d", "fluent-flat"}
    # Rows follow the spec: query row 0 is the image of its (class, item).
    label, item = spec.query[0]
    assert torch.equal(task.query_images[0], collection.load_image(spec.classes[label], item))
    assert torch.equal(task.query_labels, torch.tensor([label for label, _ in spec.query]))
