"""Builds the "same emoji, different artist" set that :mod:`litemeta.data.emoji` reads.

The builder fetches the pinned npm packages with ``npm pack``, matches emoji across them
by code point (variation selectors ignored, skin-tone variants skipped), renders vector
styles at any size and writes class folders ``<class>/<style>/<codepoints>.<ext>``
readable by ``ClassFolderDataset``, to a directory or a zip, with ``splits.json`` (whole
emoji categories per split), ``classes.json`` and ``ATTRIBUTION.md``. It backs
``litemeta data build-emoji``; training never imports it.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from litemeta.data.emoji import STYLES
from litemeta.data.images import to_rgb


@dataclass(frozen=True)
class StyleSource:
    """Where one style's images come from, and under which terms."""

    style: str
    package: str
    version: str
    license: str
    authors: str


STYLE_SOURCES: tuple[StyleSource, ...] = (
    StyleSource(
        "google",
        "emoji-datasource-google",
        "16.0.0",
        "Apache-2.0",
        "Google (Noto Emoji), packaged by Cal Henderson's emoji-data",
    ),
    StyleSource(
        "twitter",
        "emoji-datasource-twitter",
        "16.0.0",
        "CC-BY-4.0",
        "Twitter, Inc. and other contributors (Twemoji), packaged by emoji-data",
    ),
    StyleSource(
        "openmoji",
        "openmoji",
        "17.0.0",
        "CC-BY-SA-4.0",
        "OpenMoji, HfG Schwaebisch Gmuend and contributors (per-emoji authors in classes.json)",
    ),
    StyleSource(
        "fluent-color",
        "fluentui-emoji",
        "1.3.0",
        "MIT",
        "Microsoft Corporation (Fluent UI Emoji), packaged by Mohammad Abu Mattar",
    ),
    StyleSource(
        "fluent-flat",
        "fluentui-emoji",
        "1.3.0",
        "MIT",
        "Microsoft Corporation (Fluent UI Emoji), packaged by Mohammad Abu Mattar",
    ),
    StyleSource(
        "fluent-high-contrast",
        "fluentui-emoji",
        "1.3.0",
        "MIT",
        "Microsoft Corporation (Fluent UI Emoji), packaged by Mohammad Abu Mattar",
    ),
    StyleSource(
        "fluent-3d",
        "@lobehub/fluent-emoji-3d",
        "1.1.0",
        "MIT",
        "Microsoft Corporation (Fluent Emoji 3D), packaged by LobeHub",
    ),
)
"""One source per style of :data:`litemeta.data.emoji.STYLES`, in the same order."""
FLUENT_FOLDERS = {
    "fluent-color": "modern",
    "fluent-flat": "flat",
    "fluent-high-contrast": "high-contrast",
}

SPLIT_OF_CATEGORY: dict[str, str] = {
    "People & Body": "train",
    "Objects": "train",
    "Travel & Places": "train",
    "Symbols": "train",
    "Flags": "train",
    "Activities": "validation",
    "Food & Drink": "validation",
    "Smileys & Emotion": "test",
    "Animals & Nature": "test",
}
"""Whole categories per split: meta-test emoji are of kinds never seen in meta-training."""
SKIPPED_CATEGORIES = frozenset({"Component"})  # skin-tone swatches and hair parts
SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
VARIATION_SELECTORS = frozenset({"fe0e", "fe0f"})


def normalise_codepoints(sequence: str) -> str:
    """``'2716-FE0F'`` -> ``'2716'``: lower-case hex joined by ``-``, selectors dropped."""
    parts = [p.lower().lstrip("0") or "0" for p in re.split(r"[-_ ]", sequence.strip()) if p]
    return "-".join(p.zfill(4) for p in parts if p not in VARIATION_SELECTORS)


def has_skin_tone(key: str) -> bool:
    return any(part in SKIN_TONES for part in key.split("-"))


def slugify(text: str) -> str:
    """``"one o'clock"`` -> ``'one-oclock'``, as Fluent UI Emoji names its files."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    ascii_text = ascii_text.lower().replace("'", "").replace("\u2019", "")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")


@dataclass
class EmojiClass:
    """One emoji: its code points, CLDR name, category and a source file per style."""

    key: str
    name: str
    category: str
    subcategory: str
    files: dict[str, Path] = field(default_factory=dict)
    author: str = ""

    @property
    def folder(self) -> str:
        return f"{self.key}_{self.name}"


def package_dir(packages: Path, package: str) -> Path:
    return packages / package.replace("/", "__").lstrip("@") / "package"


def fetch_packages(dest: Path, progress: bool = True) -> Path:
    """Fetch and unpack the pinned style packages with ``npm pack`` into ``dest``."""
    from tqdm import tqdm

    dest.mkdir(parents=True, exist_ok=True)
    specs = sorted({(s.package, s.version) for s in STYLE_SOURCES})
    for package, version in tqdm(specs, desc="fetching npm packages", disable=not progress):
        target = package_dir(dest, package)
        if target.is_dir():
            continue
        with tempfile.TemporaryDirectory() as scratch:
            try:
                result = subprocess.run(
                    ["npm", "pack", f"{package}@{version}", "--silent"],
                    cwd=scratch,
                    check=True,
                    capture_output=True,
                    text=True,
                )
            except FileNotFoundError as error:
                raise RuntimeError(
                    "npm is needed to fetch the emoji packages; install Node.js "
                    "or pass --packages with unpacked packages"
                ) from error
            except subprocess.CalledProcessError as error:
                message = f"npm pack {package}@{version} failed: {error.stderr}"
                raise RuntimeError(message) from error
            tarball = Path(scratch) / result.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as archive:
                archive.extractall(target.parent, filter="data")
    return dest


def _datasource_entries(packages: Path) -> list[dict]:
    path = package_dir(packages, "emoji-datasource-google") / "emoji.json"
    return json.loads(path.read_text(encoding="utf-8"))


def match_emoji(packages: Path) -> list[EmojiClass]:
    """Find the emoji present in every style, with the source file of each style.

    Code points are matched after dropping variation selectors; skin-tone variants and
    the Component category are skipped. Fluent UI Emoji names files by CLDR name, tried
    in the order OpenMoji annotation, Unicode name, short names, each also with the
    ``-default`` suffix of skin-tone-capable emoji; a file serves one emoji only.
    """
    openmoji_root = package_dir(packages, "openmoji")
    openmoji = {
        normalise_codepoints(entry["hexcode"]): entry
        for entry in json.loads((openmoji_root / "data" / "openmoji.json").read_text("utf-8"))
    }
    lobehub_root = package_dir(packages, "@lobehub/fluent-emoji-3d") / "assets"
    fluent_3d = {normalise_codepoints(p.stem): p for p in lobehub_root.glob("*.webp")}
    fluent_root = package_dir(packages, "fluentui-emoji") / "icons"
    fluent = {
        style: {p.stem: p for p in (fluent_root / folder).glob("*.svg")}
        for style, folder in FLUENT_FOLDERS.items()
    }
    used: dict[str, set[str]] = {style: set() for style in FLUENT_FOLDERS}
    classes = []
    for entry in _datasource_entries(packages):
        key = normalise_codepoints(entry["unified"])
        if entry.get("category") in SKIPPED_CATEGORIES or has_skin_tone(key):
            continue
        if not (entry.get("has_img_google") and entry.get("has_img_twitter")):
            continue
        if key not in openmoji or key not in fluent_3d:
            continue
        annotation = openmoji[key].get("annotation") or entry.get("name") or key
        candidates = [slugify(annotation), slugify(entry.get("name") or "")]
        candidates += [slugify(n) for n in entry.get("short_names", [])]
        files: dict[str, Path] = {}
        for style, names in fluent.items():
            for candidate in candidates:
                hit = next(
                    (f"{candidate}{s}" for s in ("", "-default") if f"{candidate}{s}" in names),
                    None,
                )
                if candidate and hit and hit not in used[style]:
                    files[style] = names[hit]
                    break
        if len(files) < len(fluent):
            continue
        for style, path in files.items():
            used[style].add(path.stem)
        for vendor in ("google", "twitter"):
            vendor_root = package_dir(packages, f"emoji-datasource-{vendor}")
            files[vendor] = vendor_root / "img" / vendor / "64" / entry["image"]
        files["openmoji"] = openmoji_root / "color" / "svg" / f"{openmoji[key]['hexcode']}.svg"
        files["fluent-3d"] = fluent_3d[key]
        if not all(path.is_file() for path in files.values()):
            continue
        classes.append(
            EmojiClass(
                key=key,
                name=slugify(annotation),
                category=entry["category"],
                subcategory=entry.get("subcategory", ""),
                files=files,
                author=openmoji[key].get("openmoji_author", ""),
            )
        )
    return sorted(classes, key=lambda c: c.key)


def split_by_category(
    classes: Iterable[EmojiClass], split_of_category: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Class folders per split, whole categories at a time (no category in two splits)."""
    mapping = SPLIT_OF_CATEGORY if split_of_category is None else split_of_category
    splits: dict[str, list[str]] = {split: [] for split in dict.fromkeys(mapping.values())}
    for emoji in classes:
        if emoji.category not in mapping:
            raise ValueError(
                f"emoji category {emoji.category!r} has no split; add it to SPLIT_OF_CATEGORY"
            )
        splits[mapping[emoji.category]].append(emoji.folder)
    return splits


def render_image(path: Path, size: int) -> Image.Image:
    """Render an SVG or resize a raster to ``size`` square RGB, on a white background."""
    if path.suffix.lower() == ".svg":
        try:
            import cairosvg
        except ImportError as error:
            raise RuntimeError(
                "rendering SVG emoji needs cairosvg: pip install 'litemeta[emoji]'"
            ) from error
        png = cairosvg.svg2png(url=str(path), output_width=size, output_height=size)
        image = Image.open(io.BytesIO(png))
    else:
        image = Image.open(path)
    image = to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def attribution_text(styles: Sequence[str]) -> str:
    lines = [
        "# Emoji images: sources and licenses",
        "",
        "Each image is an emoji from one of these packages, rendered or resized and placed",
        "on a white background. The images keep their upstream licenses:",
        "",
    ]
    for source in STYLE_SOURCES:
        if source.style in styles:
            lines.append(
                f"- `{source.style}`: npm `{source.package}@{source.version}`, "
                f"{source.license}, by {source.authors}."
            )
    lines += [
        "",
        "The `openmoji` images are derived from OpenMoji and are shared under the same",
        "license, CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).",
        "The `twitter` images are Twemoji graphics under CC BY 4.0",
        "(https://creativecommons.org/licenses/by/4.0/). The `google` images are Noto",
        "Emoji under the Apache License 2.0. The Fluent images are under the MIT license,",
        "Copyright (c) Microsoft Corporation.",
        "",
    ]
    return "\n".join(lines)


class _Writer:
    """Writes files into a directory, or into a zip when ``out`` ends in ``.zip``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.archive: zipfile.ZipFile | None = None
        if out.suffix == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            self.archive = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED)
        else:
            out.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, data: bytes) -> None:
        if self.archive is not None:
            self.archive.writestr(relative, data)
            return
        target = self.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def encode_image(image: Image.Image, image_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if image_format == "webp":
        image.save(buffer, "WEBP", quality=quality, method=6)
    elif image_format == "png":
        image.save(buffer, "PNG", optimize=True)
    else:
        raise ValueError(f"image_format must be 'png' or 'webp', got {image_format!r}")
    return buffer.getvalue()


def write_emoji_set(
    classes: Sequence[EmojiClass],
    out: Path,
    size: int,
    styles: Sequence[str] = STYLES,
    image_format: str = "png",
    quality: int = 90,
    progress: bool = True,
    render: Callable[[Path, int], Image.Image] = render_image,
) -> dict[str, list[str]]:
    """Write class folders (``out`` a directory, or a ``.zip``), splits and attribution."""
    from tqdm import tqdm

    splits = split_by_category(classes)
    writer = _Writer(out)
    try:
        for emoji in tqdm(classes, desc=f"rendering emoji at {size}px", disable=not progress):
            for style in styles:
                data = encode_image(render(emoji.files[style], size), image_format, quality)
                writer.write(f"{emoji.folder}/{style}/{emoji.key}.{image_format}", data)
        metadata = [
            {
                "folder": e.folder,
                "codepoints": e.key,
                "name": e.name,
                "category": e.category,
                "subcategory": e.subcategory,
                "openmoji_author": e.author,
            }
            for e in classes
        ]
        writer.write("splits.json", json.dumps(splits, indent=1).encode())
        writer.write("classes.json", json.dumps(metadata, indent=1).encode())
        writer.write("ATTRIBUTION.md", attribution_text(styles).encode())
    finally:
        writer.close()
    return splits


def _check_build_settings(
    out: Path, size: int, limit: int | None, styles: Sequence[str], quality: int
) -> None:
    unknown = sorted(set(styles) - set(STYLES))
    if unknown:
        raise ValueError(f"unknown styles {unknown}; choose from {list(STYLES)}")
    if size < 1:
        raise ValueError(f"--size must be a positive number of pixels, got {size}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 emoji per split, got {limit}")
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality must be between 1 and 100, got {quality}")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise FileExistsError(
            f"{out} already exists and is not empty; choose a new --out, or delete it first "
            "(a build into it would mix two sets)"
        )


def build_emoji(
    out: Path,
    size: int = 224,
    limit: int | None = None,
    packages: Path | None = None,
    styles: Sequence[str] = STYLES,
    image_format: str = "png",
    quality: int = 90,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Fetch (unless ``packages`` holds them unpacked), match, render and write the set.

    ``limit`` keeps the first ``limit`` emoji of each split, for quick checks. The settings
    and ``out`` are checked before anything is fetched; ``out`` must not exist or be an
    empty directory, so a build never mixes with an earlier one.
    """
    _check_build_settings(out, size, limit, styles, quality)
    with tempfile.TemporaryDirectory() as scratch:
        root = packages if packages is not None else fetch_packages(Path(scratch), progress)
        classes = match_emoji(root)
        if limit is not None:
            per_split = split_by_category(classes)
            keep = {folder for folders in per_split.values() for folder in folders[:limit]}
            classes = [c for c in classes if c.folder in keep]
        return write_emoji_set(classes, out, size, styles, image_format, quality, progress)
