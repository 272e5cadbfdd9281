import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from litemeta.data.base import class_pools
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.episodic import EpisodicTaskDataset
from litemeta.data.images import ImageLoadError
from litemeta.data.samplers import FixedWaySampler

STYLES = ["sketch", "photo", "cartoon"]


def write_image(path, colour, size=(20, 14), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


@pytest.fixture
def styled_root(tmp_path):
    """6 classes x 3 styles x 2 images; class c, style s has red = 40 c + s."""
    root = tmp_path / "styled"
    for c in range(6):
        for s, style in enumerate(STYLES):
            for i in range(2):
                write_image(root / f"class{c}" / style / f"{i}.png", (40 * c + s, 10 * i, 0))
    splits = {"train": [f"class{c}" for c in range(4)], "test": ["class4", "class5"]}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def test_reads_classes_styles_and_splits(styled_root):
    train = ClassFolderDataset(styled_root, split="train")
    assert train.class_names == ["class0", "class1", "class2", "class3"]
    assert train.num_items(0) == 6
    assert train.styles() == sorted(STYLES)
    test = ClassFolderDataset(styled_root, split="test")
    assert test.class_names == ["class4", "class5"]
    assert ClassFolderDataset(styled_root).num_classes == 6


def test_tasks_take_support_and_query_from_chosen_styles(styled_root):
    collection = ClassFolderDataset(styled_root, split="train", decode_size=16)
    dataset = EpisodicTaskDataset(
        collection,
        FixedWaySampler(way=3, shot=2, query=2),
        num_tasks=3,
        support_styles=["sketch", "photo"],
        query_styles=["cartoon"],
    )
    task = dataset[1]
    assert task.support_images.shape == (6, 3, 16, 16)
    assert task.support_images.dtype == torch.uint8
    names = [int(n.removeprefix("class")) for n in task.class_names]
    red_support = task.support_images[:, 0, 8, 8].numpy()
    red_query = task.query_images[:, 0, 8, 8].numpy()
    labels_s, labels_q = task.support_labels.numpy(), task.query_labels.numpy()
    # style index = red - 40 * class: sketch 0 / photo 1 in support, cartoon 2 in query
    assert set((red_support - 40 * np.array(names)[labels_s]).tolist()) <= {0, 1}
    assert set((red_query - 40 * np.array(names)[labels_q]).tolist()) == {2}


def test_reads_the_same_tree_from_a_zip(styled_root, tmp_path):
    archive = tmp_path / "styled.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(styled_root.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(styled_root).as_posix())
    from_zip = ClassFolderDataset(archive, split="train", decode_size=12)
    from_dir = ClassFolderDataset(styled_root, split="train", decode_size=12)
    assert from_zip.class_names == from_dir.class_names
    assert from_zip.item_styles(2) == from_dir.item_styles(2)
    assert torch.equal(from_zip.load_image(2, 3), from_dir.load_image(2, 3))


def test_style_from_file_name_pattern(tmp_path):
    for c in range(2):
        for style in ("a", "b"):
            write_image(tmp_path / f"c{c}" / f"{style}_01.jpg", (c, 0, 0))
    collection = ClassFolderDataset(tmp_path, style_rule=r"^(?P<style>[^_]+)_")
    assert collection.item_styles(0) == ["a", "b"]


def test_transparent_images_are_composited_on_white(tmp_path):
    write_image(tmp_path / "c" / "x.png", (0, 0, 0, 0), mode="RGBA")
    image = ClassFolderDataset(tmp_path).load_image(0, 0)
    assert image.min() == 255


def test_empty_and_missing_roots_say_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClassFolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        ClassFolderDataset(tmp_path / "empty")


def test_split_errors_are_explicit(styled_root, tmp_path):
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        ClassFolderDataset(styled_root, split="validation")
    plain = tmp_path / "plain"
    shutil.copytree(styled_root / "class0", plain / "class0")
    with pytest.raises(ValueError, match=r"has no splits\.json"):
        ClassFolderDataset(plain, split="train")


def test_corrupt_image_is_reported_with_its_path(styled_root):
    bad = styled_root / "class1" / "photo" / "0.png"
    bad.write_bytes(b"not an image")
    strict = ClassFolderDataset(styled_root, split="train")
    item = strict._items[1].index(("class1/photo/0.png", "photo"))
    with pytest.raises(ImageLoadError, match=r"class1/photo/0\.png"):
        strict.load_image(1, item)
    with pytest.raises(ImageLoadError, match=r"class1/photo/0\.png"):
        ClassFolderDataset(styled_root, split="train", verify=True)
    with pytest.warns(UserWarning, match=r"class1/photo/0\.png"):
        lenient = ClassFolderDataset(styled_root, split="train", verify=True, on_error="skip")
    assert lenient.num_items(1) == 5


def test_too_few_images_fails_before_training(styled_root):
    collection = ClassFolderDataset(styled_root, split="train")
    pools = class_pools(collection, support_styles=["sketch"], query_styles=["photo"])
    with pytest.raises(ValueError, match="4 classes have fewer images"):
        FixedWaySampler(way=2, shot=3, query=1).check(pools)


def test_macos_metadata_and_hidden_files_in_a_zip_are_left_out(styled_root, tmp_path):
    """A zip made on macOS holds ``__MACOSX/`` resource forks, ``._*`` files and
    ``.DS_Store``: none of them is a class or an image."""
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(styled_root.rglob("*")):
            if path.is_file():
                relative = path.relative_to(styled_root).as_posix()
                out.write(path, relative)
                if path.suffix == ".png":
                    parent, _, name = relative.rpartition("/")
                    out.writestr(f"__MACOSX/{parent}/._{name}", b"\x00\x05\x16\x07")
                    out.writestr(f"{parent}/._{name}", b"\x00\x05\x16\x07")
        out.writestr("class0/.DS_Store", b"\x00\x00\x00\x01Bud1")
        out.writestr(".hidden/x.png", b"")
    from_zip = ClassFolderDataset(archive)
    assert from_zip.class_names == ClassFolderDataset(styled_root).class_names
    assert from_zip.num_items(0) == 6
    assert from_zip.styles() == sorted(STYLES)


def test_symbolic_links_to_class_folders_are_followed_once(styled_root, tmp_path):
    root = tmp_path / "linked"
    root.mkdir()
    for c in range(3):
        (root / f"class{c}").symlink_to(styled_root / f"class{c}", target_is_directory=True)
    (root / "class0" / "sketch" / "loop").symlink_to(root, target_is_directory=True)
    collection = ClassFolderDataset(root)
    assert collection.class_names == ["class0", "class1", "class2"]
    assert [collection.num_items(c) for c in range(3)] == [6, 6, 6]


def test_a_class_listed_twice_or_in_two_splits_is_refused(styled_root):
    splits = styled_root / "splits.json"
    splits.write_text(json.dumps({"train": ["class0", "class1", "class1"], "test": ["class4"]}))
    with pytest.raises(ValueError, match=r"split 'train'.*\['class1'\] more than once"):
        ClassFolderDataset(styled_root, split="train")
    splits.write_text(json.dumps({"train": ["class0", "class4"], "test": ["class4", "class5"]}))
    with pytest.raises(ValueError, match=r"'train' and 'test'.*share classes \['class4'\]"):
        ClassFolderDataset(styled_root, split="test")


def test_verify_decodes_every_image_so_a_truncated_jpeg_is_caught(styled_root):
    """``Image.verify`` reads headers only: a JPEG cut short passes it and fails later."""
    path = styled_root / "class2" / "photo" / "0.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.warns(UserWarning, match=r"class2/photo/0\.jpg.*truncated"):
        checked = ClassFolderDataset(styled_root, split="train", verify=True, on_error="skip")
    assert checked.num_items(2) == 6  # the 6 PNGs; the JPEG is dropped
