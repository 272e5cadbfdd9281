"""One meta-trained learner shared by every recogniser: decode, adapt in one pass, predict."""

from __future__ import annotations

import io
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from litemeta.checkpoint import find_checkpoint
from litemeta.data.images import ImageLoadError, decode_image, to_rgb
from litemeta.data.support_folder import SupportSet
from litemeta.device import pick_device, place_on_device
from litemeta.evaluation.trained import adapt_to_support, load_trained_learner, trained_on
from litemeta.learners import build_learner
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.classifiers import BackboneTaskClassifier
from litemeta.serve.background import background_of
from litemeta.serve.calibration import OpenSet
from litemeta.serve.export import export_onnx, quantise
from litemeta.serve.quality import adapt_and_calibrate, quality_report
from litemeta.serve.records import Example, Recogniser, Taught

__all__ = [
    "Adapted",
    "CheckedImage",
    "ModelDescription",
    "Personaliser",
    "UnreadableExample",
    "check_image",
    "make_thumbnail",
]

#: The image formats the app accepts, by the name Pillow gives them.
MEDIA_TYPES = {
    "JPEG": (".jpg", "image/jpeg"),
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
    "GIF": (".gif", "image/gif"),
    "BMP": (".bmp", "image/bmp"),
}
#: Pillow calls phones' JPEGs with extra frames (an MPF block) MPO; its JPEG reader opens
#: them, and they are kept as JPEG and read by their first frame.
ALIASES = {"MPO": "JPEG"}
ACCEPTED = "JPEG, PNG, WebP, GIF or BMP"


class UnreadableExample(RuntimeError):
    """A stored example whose image file is missing or cannot be decoded; the message names
    it and says to delete it."""


#: Uploads are stored with their longest side at most this many times the model's image
#: size: enough for any crop or resize the model needs, small to decode on every teach.
STORED_SIZE_FACTOR = 4
#: The longest side of the thumbnails the page shows.
THUMBNAIL_SIDE = 112
#: The most memory one upload may take to decode (Pillow holds colour pixels in 4 bytes).
MAX_DECODED_MB = 192
#: Bytes per pixel of Pillow's image modes; other modes take 4.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


@dataclass(frozen=True)
class CheckedImage:
    """An accepted upload: the bytes to store (as received, or downscaled) and their type."""

    data: bytes
    extension: str
    media_type: str


def check_image(data: bytes, source: str, longest_side: int | None = None) -> CheckedImage:
    """An upload that decodes fully as an image in one of :data:`MEDIA_TYPES`, decoded once;
    :class:`ImageLoadError` otherwise. Only those formats' headers are parsed, and the image
    is decoded only once its format and size are accepted (JPEGs at a reduced scale when
    large). With ``longest_side``, a larger image is downscaled to it (upright, RGB) and
    stored as JPEG (JPEG uploads) or PNG; a smaller one is kept as received."""
    if not data:
        raise ImageLoadError(f"{source} is empty; choose an image file")
    try:
        with warnings.catch_warnings():  # the size is checked below, by memory
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(MEDIA_TYPES))
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"cannot decode image {source}: it is not a {ACCEPTED} image (or it is corrupt); "
            "upload one of those"
        ) from None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"{source} has too many pixels ({error}); shrink it") from None
    except OSError as error:  # a header Pillow's reader for the format refuses
        raise ImageLoadError(f"cannot decode image {source}: {error}") from None
    with image:
        kind = ALIASES.get(image.format or "", image.format or "")
        extension, media_type = MEDIA_TYPES[kind]
        if longest_side is not None and kind == "JPEG":
            image.draft("RGB", (longest_side, longest_side))  # decode at 1/2, 1/4 or 1/8
        _check_decoded_size(image, source)
        try:
            image.load()
            large = longest_side is not None and max(image.size) > longest_side
            if large:
                image.thumbnail((longest_side, longest_side), reducing_gap=None)
            rgb = to_rgb(ImageOps.exif_transpose(image))
        except Exception as error:  # PIL raises many types for corrupt files
            raise ImageLoadError(
                f"cannot decode image {source}: {type(error).__name__}: {error}; upload another"
            ) from None
    if not large:
        return CheckedImage(data, extension, media_type)
    buffer = io.BytesIO()
    if kind == "JPEG":
        rgb.save(buffer, "JPEG", quality=90)
    else:
        rgb.save(buffer, "PNG")
        extension, media_type = MEDIA_TYPES["PNG"]
    return CheckedImage(buffer.getvalue(), extension, media_type)


def _check_decoded_size(image: Image.Image, source: str) -> None:
    """:class:`ImageLoadError` if decoding ``image`` would take over :data:`MAX_DECODED_MB`."""
    width, height = image.size
    megabytes = width * height * _PIXEL_BYTES.get(image.mode, 4) / 2**20
    if megabytes > MAX_DECODED_MB:
        side = int((MAX_DECODED_MB * 2**20 / 4) ** 0.5) // 100 * 100
        raise ImageLoadError(
            f"{source} is {width} x {height} pixels, too large to read here (it takes "
            f"{megabytes:.0f} MB to decode, at most {MAX_DECODED_MB} MB: e.g. {side} x {side} "
            "in colour); shrink it and upload it again"
        )


def make_thumbnail(path: Path, side: int = THUMBNAIL_SIDE) -> bytes:
    """A stored image at most ``side`` pixels on its longest side, upright, as JPEG."""
    with Image.open(path) as image:
        image.draft("RGB", (side, side))
        image.thumbnail((side, side))
        rgb = to_rgb(ImageOps.exif_transpose(image))
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass(frozen=True)
class Adapted:
    """A recogniser's classifier after "teach": its class names, the classifier and its
    open-set calibration."""

    classes: list[str]
    classifier: BackboneTaskClassifier
    open_set: OpenSet


@dataclass(frozen=True)
class ModelDescription:
    """The model in plain words for the page, whether it was meta-trained, and if not, a
    hint how to meta-train one."""

    model: str
    meta_trained: bool
    hint: str | None = None


#: The model `litemeta serve` uses without a checkpoint: ProtoNets' classifier on the
#: ImageNet-pretrained EfficientNet-Lite0, at the default experiment's image size and
#: distance scale (litemeta/configs/default.yaml).
PRETRAINED_BACKBONE = "efficientnet_lite0"
PRETRAINED_IMAGE_SIZE = 84
PRETRAINED_DISTANCE_SCALE = 0.01
PRETRAINED_HINT = (
    "for better accuracy, meta-train the backbone with `litemeta train`, then start "
    "`litemeta serve --checkpoint runs/default`"
)
NO_CHECKPOINT_HINT = (
    "train one with `litemeta train`, or start `litemeta serve` without --checkpoint to use "
    "the pretrained backbone"
)
BACKBONE_NAMES = {
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_b0": "EfficientNet-B0",
    "resnet18": "ResNet-18",
}
LEARNER_NAMES = {
    "protonets": "ProtoNets",
    "cnaps": "CNAPs",
    "simple_cnaps": "Simple CNAPs",
    "finetuner": "fine-tuning",
}


def _backbone_name(learner: BackboneLearner) -> str:
    name = learner.backbone.config().get("name", "")
    return BACKBONE_NAMES.get(name, name or type(learner.backbone).__name__)


def describe(learner: BackboneLearner, checkpoint: Path | None) -> ModelDescription:
    """The plain-words description of a checkpoint's learner (``None``: the pretrained one)."""
    backbone = _backbone_name(learner)
    size = f"{learner.backbone.image_size} px"
    method = LEARNER_NAMES.get(learner.name, learner.name)
    if checkpoint is None:
        source = "pretrained on ImageNet" if learner.backbone.pretrained else "random weights"
        model = f"{backbone}, {source}, not meta-trained, {method}' classifier, {size}"
        return ModelDescription(model, False, PRETRAINED_HINT)
    data = trained_on(checkpoint)
    on = f" on {data}" if data else ""
    return ModelDescription(f"{backbone}, meta-trained{on} with {method}, {size}", True)


#: Support images per forward pass when teaching on a CPU: smaller chunks stay in cache
#: (EfficientNet-Lite0, 2 cores, teaching 100 images: 84 px 0.25 s in chunks of 16 or 64;
#: 224 px 1.8 s in chunks of 16, 3.1 s in 64; docs/benchmarks.md).
CPU_CHUNK_SIZE = 16


def _teaching_chunk_size(chunk_size: int | None) -> int | None:
    """``chunk_size``, or :data:`CPU_CHUNK_SIZE` where it is ``None`` and the device is a
    CPU (``None`` on a GPU: the loader's)."""
    if chunk_size is None and pick_device().type == "cpu":
        return CPU_CHUNK_SIZE
    return chunk_size


class Personaliser:
    """The learner of a checkpoint (or the pretrained one), adapting recognisers and
    predicting with them.

    The constructors' ``chunk_size`` sets how many support images go through the backbone
    at once when teaching (default: :data:`CPU_CHUNK_SIZE` on a CPU, the loader's on a
    GPU); it is given to the loader, which sets the learner's chunk size.

    Calls are serialised by a lock: the CPU is shared anyway, and a learner's FiLM hooks
    are module state.
    """

    def __init__(
        self, learner: BackboneLearner, description: ModelDescription | None = None
    ) -> None:
        self.learner = learner.eval()
        self.image_size = learner.backbone.image_size
        self.device = next(learner.parameters()).device
        self.description = description or describe(learner, None)
        self._lock = threading.Lock()
        background_of(self.learner.backbone)  # for "none of these": at start-up, not teaching

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, chunk_size: int | None = None) -> Personaliser:
        """The personaliser of a checkpoint; ``FileNotFoundError`` says how to get one."""
        try:
            find_checkpoint(checkpoint)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}: {NO_CHECKPOINT_HINT}") from None
        learner = load_trained_learner(checkpoint, _teaching_chunk_size(chunk_size))
        return cls(learner, describe(learner, Path(checkpoint)))

    @classmethod
    def pretrained(cls, chunk_size: int | None = None) -> Personaliser:
        """ProtoNets on the ImageNet-pretrained EfficientNet-Lite0 (offline weights), not
        meta-trained: what `litemeta serve` uses without a checkpoint."""
        learner = build_learner(
            "protonets",
            PRETRAINED_BACKBONE,
            PRETRAINED_IMAGE_SIZE,
            pretrained=True,
            distance_scale=PRETRAINED_DISTANCE_SCALE,
            chunk_size=_teaching_chunk_size(chunk_size),
        )
        return cls(place_on_device(learner, pick_device()))

    def images(self, data: list[bytes], sources: list[str]) -> torch.Tensor:
        """Decode image bytes to a uint8 batch at the learner's image size."""
        return torch.stack(
            [decode_image(d, self.image_size, s) for d, s in zip(data, sources, strict=True)]
        ).to(self.device)

    def teach(self, recogniser: Recogniser) -> tuple[Adapted, Taught]:
        """Adapt to the recogniser's examples in one pass, and calibrate and report on it
        by leave-one-out; ``ValueError`` says what is missing."""
        classes = list(recogniser.classes)
        if len(classes) < 2:
            raise ValueError(
                f"a recogniser needs at least two classes to tell apart, it has {len(classes)}; "
                "add another class with a few examples"
            )
        empty = [repr(label) for label, examples in recogniser.classes.items() if not examples]
        if len(empty) == 1:
            raise ValueError(f"class {empty[0]} has no examples; add a few photos or delete it")
        if empty:
            raise ValueError(
                f"classes {', '.join(empty)} have no examples; add a few photos or delete them"
            )
        start = time.perf_counter()
        examples = [e for label in classes for e in recogniser.classes[label]]
        labels = [i for i, label in enumerate(classes) for _ in recogniser.classes[label]]
        images = torch.stack([self._example(e) for e in examples])
        support = SupportSet(classes, images, torch.tensor(labels))
        with self._lock:
            classifier, open_set, held_out = adapt_to_support(
                self.learner, support, adapt_and_calibrate
            )
        quality = quality_report(classes, [e.id for e in examples], labels, held_out)
        seconds = round(time.perf_counter() - start, 4)
        taught = Taught(classes, len(examples), seconds, quality, open_set.summary())
        return Adapted(classes, classifier, open_set), taught

    def _example(self, example: Example) -> torch.Tensor:
        """A stored example decoded; :class:`UnreadableExample` names it if that fails."""
        try:
            return decode_image(example.path.read_bytes(), self.image_size, example.path.name)
        except (OSError, ImageLoadError) as error:
            problem = "its image file is missing" if not example.path.exists() else str(error)
            raise UnreadableExample(
                f"example {example.id} of class {example.label!r} cannot be used ({problem}); "
                "delete it and teach again"
            ) from None

    def predict(
        self, adapted: Adapted, data: bytes, source: str, threshold: float | None = None
    ) -> dict[str, object]:
        """The answer for one image: the most probable class, or none when its familiarity
        ``score`` is below ``threshold`` (default: the calibrated one), and every class
        with its calibrated probability, most probable first."""
        image = self.images([data], [source])
        with self._lock, torch.no_grad():
            features = adapted.classifier.embed(image).float()
            logits = adapted.classifier.classify(features)[0].cpu()
        open_set = adapted.open_set
        threshold = open_set.threshold if threshold is None else threshold
        probabilities = (logits / open_set.temperature).softmax(-1).tolist()
        score = float(open_set.familiarity(features.double().cpu())[0])
        ranked = sorted(zip(adapted.classes, probabilities, strict=True), key=lambda p: -p[1])
        rejected = score < threshold
        return {
            "label": None if rejected else ranked[0][0],
            "none_of_these": rejected,
            "score": score,
            "threshold": threshold,
            "probabilities": [{"label": label, "probability": p} for label, p in ranked],
        }

    def export(self, adapted: Adapted, threshold: float | None = None, int8: bool = False) -> bytes:
        """The taught recogniser as ONNX bytes with its calibration and ``threshold``
        (default: the calibrated one), float or int8 (see :mod:`litemeta.serve.export`)."""
        threshold = adapted.open_set.threshold if threshold is None else threshold
        with self._lock:
            model = export_onnx(
                self.learner.backbone,
                adapted.classifier,
                adapted.classes,
                adapted.open_set,
                threshold,
            )
        return quantise(model) if int8 else model
