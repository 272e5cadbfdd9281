"""Using a taught recogniser: label one image, or download it as an ONNX model."""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from litemeta.serve.guards import Refused
from litemeta.serve.routes.requests import checked_images, form
from litemeta.serve.routes.state import ServingState

__all__ = ["EXPORT_FORMATS", "ascii_file_name", "content_disposition", "router"]

#: Export formats by name, with the file name's suffix.
EXPORT_FORMATS = {"onnx": ".onnx", "onnx-int8": "-int8.onnx"}

router = APIRouter(prefix="/api/recognisers/{recogniser_id}")


def ascii_file_name(name: str) -> str:
    """``name`` in ASCII letters, digits, ``-`` and ``_`` for a download: accents dropped
    (``é`` -> ``e``), other characters as ``-``; a name with no ASCII letter or digit
    (``猫と犬 🐶``) is spelt by its UTF-8 bytes in hex instead, never as dashes only."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    spelt = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in plain)
    spelt = "-".join(part for part in spelt.split("-") if part)
    if not any(c.isalnum() for c in spelt):
        return "recogniser-" + name.encode("utf-8").hex()[:32]
    return spelt


def content_disposition(name: str, suffix: str) -> str:
    """An attachment named ``name + suffix``: the ASCII fallback in ``filename`` and the
    name itself, non-ASCII included, in ``filename*`` (RFC 6266, RFC 5987)."""
    fallback = ascii_file_name(name) + suffix
    exact = quote(unicodedata.normalize("NFC", name) + suffix, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


@router.post("/predict")
async def predict(recogniser_id: str, request: Request, serving: ServingState) -> dict[str, object]:
    """The answer for the one uploaded image (see ``Personaliser.predict``)."""
    serving.taught(serving.store.get(recogniser_id))  # before reading the upload
    _, uploads = await form(request, one=True)
    [(data, _, _)] = await checked_images(uploads, serving.personaliser.image_size)

    def answer() -> dict[str, object]:
        taught = serving.adapted(recogniser_id)
        threshold = serving.store.get(recogniser_id).own_threshold
        return serving.personaliser.predict(taught, data, "the image", threshold)

    return await run_in_threadpool(answer)


@router.get("/export")
def export(recogniser_id: str, serving: ServingState, format: str = "onnx") -> Response:
    """The taught recogniser as ONNX (``format=onnx``) or its int8 copy (``onnx-int8``)."""
    if format not in EXPORT_FORMATS:
        raise Refused(
            400,
            f"unknown export format {format!r}; use format=onnx (float) or format=onnx-int8 "
            "(quantised, about 4 times smaller)",
        )
    recogniser = serving.store.get(recogniser_id)
    taught = serving.adapted(recogniser_id)
    model = serving.personaliser.export(
        taught, serving.store.get(recogniser_id).own_threshold, int8=format == "onnx-int8"
    )
    return Response(
        model,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": content_disposition(recogniser.name, EXPORT_FORMATS[format]),
            "X-Labels": json.dumps(taught.classes),  # also in the model's metadata
        },
    )
