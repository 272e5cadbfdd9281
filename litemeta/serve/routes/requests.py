"""Reading a request's JSON field, its multipart form, and its uploaded images, with a
refusal (400) that says how to send them."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from litemeta.data.images import ImageLoadError
from litemeta.serve.guards import Refused
from litemeta.serve.recogniser import STORED_SIZE_FACTOR, check_image

__all__ = ["checked_images", "form", "json_field"]

MAX_FILES_PER_REQUEST = 100
UPLOAD_HINT = "send the images as multipart/form-data with field 'file'"


class TextFieldParser(MultiPartParser):
    """Starlette's multipart parser, refusing text fields that are not valid in the form's
    charset (UTF-8 unless it says otherwise) instead of reading them as latin-1."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset)
            except UnicodeDecodeError:
                raise MultiPartException(
                    f"form field {part.field_name!r} is not {self._charset} text"
                ) from None
        super().on_part_end()


async def json_field(request: Request, key: str) -> object:
    """The value of ``key`` in the request's JSON object."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # too deeply nested for the JSON parser
        raise Refused(400, f'send a JSON object like {{"{key}": "..."}}') from None
    if not isinstance(body, dict) or key not in body:
        raise Refused(400, f'send a JSON object like {{"{key}": "..."}}')
    return body[key]


async def form(request: Request, one: bool) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """The form's text fields and its ``file`` uploads as ``(file name, data)``; with
    ``one``, exactly one upload."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise Refused(400, UPLOAD_HINT)
    parser = TextFieldParser(request.headers, request.stream(), max_files=MAX_FILES_PER_REQUEST)
    try:
        parsed = await parser.parse()
    except Refused:
        raise
    except Exception as error:  # the multipart parser raises several types
        raise Refused(400, f"{UPLOAD_HINT} ({error})") from None
    try:
        files = [f for f in parsed.getlist("file") if isinstance(f, UploadFile)]
        if not files:
            raise Refused(400, "no image received: attach one or more files in field 'file'")
        if one and len(files) > 1:
            raise Refused(400, f"send one image at a time, got {len(files)}")
        uploads = [(f.filename or "the upload", await f.read()) for f in files]
    finally:
        await parsed.close()
    fields = {k: v for k, v in parsed.multi_items() if isinstance(v, str)}
    return fields, uploads


async def checked_images(
    uploads: list[tuple[str, bytes]], image_size: int
) -> list[tuple[bytes, str, str]]:
    """Each upload decoded once, checked and downscaled to a bounded size (a multiple of the
    model's ``image_size``), as ``(data, extension, media type)``."""
    longest_side = STORED_SIZE_FACTOR * image_size
    images = []
    for name, data in uploads:
        try:
            checked = await run_in_threadpool(check_image, data, name, longest_side)
        except ImageLoadError as error:
            raise Refused(400, str(error)) from None
        images.append((checked.data, checked.extension, checked.media_type))
    return images
