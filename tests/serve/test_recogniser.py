"""The personaliser behind the web app: uploads checked by decoding, teaching in one pass,
and predictions equal to the learner's own softmax (at the calibrated temperature) over the
taught classes."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from litemeta.data.images import ImageLoadError, decode_image
from litemeta.evaluation.trained import load_trained_learner
from litemeta.serve.recogniser import CPU_CHUNK_SIZE, Personaliser, check_image
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo


@pytest.fixture(scope="module")
def personaliser(tiny_run) -> Personaliser:
    return Personaliser.from_checkpoint(tiny_run)


def _encoded(kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (9, 7), (10, 200, 30)).save(buffer, kind)
    return buffer.getvalue()


def test_uploads_are_decoded_and_named_by_their_format():
    def kind(data: bytes, source: str) -> tuple[str, str]:
        checked = check_image(data, source)
        assert checked.data == data  # small images are kept as received
        return checked.extension, checked.media_type

    assert kind(_encoded("PNG"), "a.png") == (".png", "image/png")
    assert kind(_encoded("JPEG"), "a.bin") == (".jpg", "image/jpeg")  # by content
    assert kind(_encoded("WEBP"), "a") == (".webp", "image/webp")
    with pytest.raises(ImageLoadError, match=r"scan\.tif: it is not a JPEG, PNG, WebP, GIF"):
        check_image(_encoded("TIFF"), "scan.tif")
    with pytest.raises(ImageLoadError, match=r"blank\.png is empty"):
        check_image(b"", "blank.png")
    with pytest.raises(ImageLoadError, match=r"cannot decode image notes\.txt"):
        check_image(b"plain text", "notes.txt")


def test_a_phone_jpeg_with_extra_frames_is_a_jpeg():
    first, second = Image.new("RGB", (9, 7), (10, 200, 30)), Image.new("RGB", (9, 7), "blue")
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert check_image(buffer.getvalue(), "photo.jpg").media_type == "image/jpeg"
    assert decode_image(buffer.getvalue(), None, "photo.jpg")[:, 0, 0].tolist() == [10, 200, 30]


@pytest.mark.parametrize(
    ("kind", "reader"),
    [
        ("TGA", "TgaImagePlugin.TgaImageFile"),
        ("PCX", "PcxImagePlugin.PcxImageFile"),
        ("ICO", "IcoImagePlugin.IcoImageFile"),
        ("TIFF", "TiffImagePlugin.TiffImageFile"),
    ],
)
def test_other_formats_are_refused_without_parsing_or_decoding(kind, reader, monkeypatch):
    def not_allowed(*args):
        raise AssertionError("parsed or decoded")

    data = _encoded(kind)
    monkeypatch.setattr(f"PIL.{reader}._open", not_allowed)
    monkeypatch.setattr("litemeta.serve.recogniser.decode_image", not_allowed)
    with pytest.raises(ImageLoadError, match="it is not a JPEG, PNG, WebP, GIF or BMP image"):
        check_image(data, f"a.{kind.lower()}")


def test_teaching_adapts_once_to_every_example_and_predictions_are_the_softmax(
    personaliser, tiny_run, tmp_path
):
    store = Store(tmp_path)
    recogniser = store.create("colours")
    for label, colour in COLOURS.items():
        store.add_examples(
            recogniser, label, [(photo(colour, shot), ".png", "image/png") for shot in range(3)]
        )
    adapted, taught = personaliser.teach(store.get(recogniser))
    assert adapted.classes == taught.classes == list(COLOURS)
    assert taught.examples == 9 and taught.seconds >= 0

    query = photo(COLOURS["blue"], variant=5, kind="JPEG")
    ranked = personaliser.predict(adapted, query, "q.jpg")["probabilities"]
    assert ranked[0]["label"] == "blue"
    # By hand: the checkpoint's learner adapted to the decoded examples, class by class.
    learner = load_trained_learner(tiny_run)
    size = learner.backbone.image_size
    support = torch.stack(
        [decode_image(photo(c, shot), size, "s") for c in COLOURS.values() for shot in range(3)]
    )
    labels = torch.arange(3).repeat_interleave(3)
    with torch.no_grad():
        image = decode_image(query, size, "q")[None]
        logits = learner.adapt(support, labels)(image)
        probabilities = (logits / adapted.open_set.temperature).softmax(-1)[0].tolist()
    expected = sorted(zip(COLOURS, probabilities, strict=True), key=lambda p: -p[1])
    assert [p["label"] for p in ranked] == [label for label, _ in expected]
    assert [p["probability"] for p in ranked] == pytest.approx([p for _, p in expected], abs=1e-5)
    store.close()


def test_teaching_needs_two_classes_with_examples(personaliser, tmp_path):
    store = Store(tmp_path)
    recogniser = store.create("r")
    store.add_examples(recogniser, "red", [(photo(COLOURS["red"]), ".png", "image/png")])
    with pytest.raises(ValueError, match="at least two classes to tell apart, it has 1"):
        personaliser.teach(store.get(recogniser))
    store.add_class(recogniser, "green")
    with pytest.raises(ValueError, match=r"class 'green' has no examples"):
        personaliser.teach(store.get(recogniser))
    store.close()


def test_support_images_go_through_the_backbone_in_small_chunks_on_a_cpu(tiny_run):
    assert Personaliser.from_checkpoint(tiny_run).learner.chunk_size == CPU_CHUNK_SIZE
    assert Personaliser.from_checkpoint(tiny_run, chunk_size=5).learner.chunk_size == 5
    with pytest.raises(ValueError, match="chunk_size must be at least 1 image, got 0"):
        Personaliser.from_checkpoint(tiny_run, chunk_size=0)
