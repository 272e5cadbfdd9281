"""Fake unpacked npm emoji packages: the layout ``build_emoji(packages=...)`` reads, with
tiny images, so the builder runs offline."""

import json

from PIL import Image

from litemeta.data.emoji_build import slugify

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="16" fill="{}"/></svg>'
)
# (unified, name, category, openmoji annotation, fluent file stem or None)
ENTRIES = [
    ("1F600", "GRINNING FACE", "Smileys & Emotion", "grinning face", "grinning-face"),
    ("2716-FE0F", "HEAVY MULTIPLICATION X", "Symbols", "multiply", "multiply"),
    ("1F44B", "WAVING HAND SIGN", "People & Body", "waving hand", "waving-hand-default"),
    ("1F34E", "RED APPLE", "Food & Drink", "red apple", "red-apple"),
    ("1F1EB-1F1F7", "FRANCE", "Flags", "flag: France", None),
    ("1F3FB", "SKIN TONE 2", "Component", "light skin tone", "light-skin-tone"),
    ("1F468-1F3FB", "MAN LIGHT SKIN", "People & Body", "man: light skin tone", "man-light"),
]


def write_png(path, colour, size=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (size, size), colour).save(path)


def write_fake_packages(root):
    """Write the packages under ``root`` (a directory) and return it."""
    google = root / "emoji-datasource-google" / "package"
    twitter = root / "emoji-datasource-twitter" / "package"
    openmoji = root / "openmoji" / "package"
    fluent = root / "fluentui-emoji" / "package" / "icons"
    lobehub = root / "lobehub__fluent-emoji-3d" / "package" / "assets"
    datasource, openmoji_json = [], []
    for unified, name, category, annotation, fluent_stem in ENTRIES:
        image = f"{unified.lower()}.png"
        datasource.append(
            {
                "unified": unified,
                "name": name,
                "short_names": [slugify(name)],
                "image": image,
                "category": category,
                "subcategory": "sub",
                "has_img_google": True,
                "has_img_twitter": True,
            }
        )
        write_png(google / "img/google/64" / image, (255, 0, 0, 255))
        write_png(twitter / "img/twitter/64" / image, (0, 255, 0, 255))
        hexcode = unified.replace("-FE0F", "")
        openmoji_json.append(
            {"hexcode": hexcode, "annotation": annotation, "openmoji_author": "A. Author"}
        )
        svg = openmoji / "color" / "svg" / f"{hexcode}.svg"
        svg.parent.mkdir(parents=True, exist_ok=True)
        svg.write_text(SVG.format("#0000ff"))
        if fluent_stem:
            for folder in ("modern", "flat", "high-contrast"):
                path = fluent / folder / f"{fluent_stem}.svg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(SVG.format("#00ffff"))
        write_png(lobehub / f"{unified.lower()}.webp", (9, 9, 9, 255), size=256)
    (google / "emoji.json").write_text(json.dumps(datasource))
    (openmoji / "data").mkdir(parents=True)
    (openmoji / "data" / "openmoji.json").write_text(json.dumps(openmoji_json))
    return root
