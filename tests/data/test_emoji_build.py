import json
import zipfile

import pytest
from PIL import Image

from litemeta.cli import main
from litemeta.data.emoji import STYLES, load_emoji
from litemeta.data.emoji_build import (
    STYLE_SOURCES,
    match_emoji,
    normalise_codepoints,
    render_image,
    slugify,
    split_by_category,
    write_emoji_set,
)
from tests.data.fake_npm import write_fake_packages


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    return write_fake_packages(tmp_path_factory.mktemp("npm"))


def test_codepoints_and_names_are_normalised():
    assert normalise_codepoints("2716-FE0F") == "2716"
    assert normalise_codepoints("30-fe0f-20e3") == "0030-20e3"
    assert normalise_codepoints("1F468-200D-1F4BB") == "1f468-200d-1f4bb"
    assert slugify("one o\u2019clock") == "one-oclock"
    assert slugify("pi\u00f1ata") == "pinata"
    assert slugify("flag: Cura\u00e7ao") == "flag-curacao"


def test_matching_across_packages(packages):
    classes = match_emoji(packages)
    assert [c.key for c in classes] == ["1f34e", "1f44b", "1f600", "2716"]
    waving = next(c for c in classes if c.key == "1f44b")
    assert waving.files["fluent-flat"].name == "waving-hand-default.svg"
    assert set(waving.files) == set(STYLES)
    assert waving.folder == "1f44b_waving-hand" and waving.author == "A. Author"
    multiply = next(c for c in classes if c.key == "2716")
    assert multiply.files["openmoji"].name == "2716.svg"
    assert multiply.files["fluent-3d"].name == "2716-fe0f.webp"


def test_splits_keep_categories_apart(packages):
    classes = match_emoji(packages)
    splits = split_by_category(classes)
    assert splits == {
        "train": ["1f44b_waving-hand", "2716_multiply"],
        "validation": ["1f34e_red-apple"],
        "test": ["1f600_grinning-face"],
    }
    classes[0].category = "Made Up"
    with pytest.raises(ValueError, match="'Made Up' has no split"):
        split_by_category(classes)


def fake_render(path, size):
    return Image.new("RGB", (size, size), (len(path.name) * 5, 0, 0))


def test_writes_class_folders_readable_with_styles(packages, tmp_path):
    classes = match_emoji(packages)
    for out in (tmp_path / "folders", tmp_path / "set.zip"):
        write_emoji_set(classes, out, 20, image_format="webp", progress=False, render=fake_render)
        collection = load_emoji(split="train", root=out)
        assert collection.class_names == ["1f44b_waving-hand", "2716_multiply"]
        assert collection.styles() == sorted(STYLES)
        assert collection.load_image(0, 0).shape == (3, 20, 20)
    assert (tmp_path / "folders" / "2716_multiply" / "google" / "2716.webp").is_file()
    with zipfile.ZipFile(tmp_path / "set.zip") as archive:
        assert "CC BY-SA 4.0" in archive.read("ATTRIBUTION.md").decode()
        assert json.loads(archive.read("classes.json"))[0]["category"] == "Food & Drink"


def test_renders_svg_and_raster_sources(packages):
    pytest.importorskip("cairosvg")
    classes = match_emoji(packages)
    svg = render_image(classes[0].files["fluent-color"], 32)
    assert svg.size == (32, 32) and svg.mode == "RGB"
    assert svg.getpixel((16, 4)) == (0, 255, 255) and svg.getpixel((16, 28)) == (255, 255, 255)
    assert render_image(classes[0].files["google"], 48).getpixel((3, 3)) == (255, 0, 0)


def test_build_and_info_commands(packages, tmp_path, capsys):
    pytest.importorskip("cairosvg")
    out = tmp_path / "built"
    assert (
        main(
            [
                "data",
                "build-emoji",
                "--packages",
                str(packages),
                "--out",
                str(out),
                "--size",
                "24",
                "--limit",
                "1",
            ]
        )
        == 0
    )
    assert "wrote 3 classes" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes: 3" in printed and "styles: 7" in printed and "24x24" in printed


def test_every_style_has_one_source():
    assert tuple(source.style for source in STYLE_SOURCES) == STYLES
