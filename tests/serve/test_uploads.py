"""What the page leans on: uploads decoded once and stored at a bounded size, thumbnails,
labels with apostrophes, stale uploads refused, the page's own routes."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image
from starlette.testclient import TestClient

from litemeta.serve.app import create_app
from litemeta.serve.recogniser import MAX_DECODED_MB, STORED_SIZE_FACTOR, Personaliser
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo
from tests.serve.helpers import ROOT

#: 13,000 x 13,000 grey pixels: a 194 KB PNG under Pillow's bomb limit (179 million pixels).
HUGE_SIDE = 13_000


@pytest.fixture(scope="module")
def personaliser(tiny_run) -> Personaliser:
    return Personaliser.from_checkpoint(tiny_run)


@pytest.fixture
def client(personaliser, tmp_path) -> Iterator[TestClient]:
    app = create_app(personaliser, Store(tmp_path))
    with TestClient(app, headers={"Origin": "http://testserver"}) as client:
        yield client


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (HUGE_SIDE, HUGE_SIDE), 128).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _upload(client: TestClient, recogniser: str, label: str, *files, **fields):
    return client.post(
        f"/api/recognisers/{recogniser}/examples",
        data={"label": label, **fields},
        files=[("file", f) for f in files],
    )


def _png(colour: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buffer, "PNG")
    return buffer.getvalue()


def _stored_sizes(client: TestClient, recogniser: str, label: str) -> list[tuple[int, int]]:
    [group] = [
        c
        for c in client.get(f"/api/recognisers/{recogniser}").json()["classes"]
        if c["label"] == label
    ]
    sizes = []
    for example in group["examples"]:
        image = client.get(f"/api/recognisers/{recogniser}/examples/{example}/image")
        sizes.append(Image.open(io.BytesIO(image.content)).size)
    return sizes


def test_a_huge_upload_is_stored_small_and_teaches_and_predicts_as_fast_as_a_photo(
    client, personaliser, huge_png
):
    assert len(huge_png) < 200_000
    bound = STORED_SIZE_FACTOR * personaliser.image_size
    recogniser = client.post("/api/recognisers", json={"name": "big"}).json()["id"]
    assert (
        _upload(client, recogniser, "grey", ("huge.png", huge_png, "image/png")).status_code == 200
    )
    small = [(f"r{i}.png", photo(COLOURS["red"], i), "image/png") for i in range(2)]
    assert _upload(client, recogniser, "red", *small).status_code == 200
    [stored] = _stored_sizes(client, recogniser, "grey")
    assert stored == (bound, bound)
    teach = client.post(f"/api/recognisers/{recogniser}/teach")
    assert teach.status_code == 200 and teach.json()["seconds"] < 0.5

    # a prediction decodes the huge upload once (about a second), then only the small copy
    predicted = client.post(
        f"/api/recognisers/{recogniser}/predict",
        files={"file": ("huge.png", huge_png, "image/png")},
    )
    assert predicted.status_code == 200
    start = time.perf_counter()
    client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
    assert time.perf_counter() - start < 0.5


MEASURE = """
import io, resource, sys
from types import SimpleNamespace
from PIL import Image
from starlette.testclient import TestClient
from litemeta.serve.app import create_app
from litemeta.serve.store import Store

huge = open(sys.argv[1], "rb").read()
app = create_app(SimpleNamespace(image_size=32), Store(sys.argv[2]))
client = TestClient(app, headers={"Origin": "http://testserver"})
recogniser = client.post("/api/recognisers", json={"name": "big"}).json()["id"]
route = f"/api/recognisers/{recogniser}/examples"
small = io.BytesIO()
Image.new("L", (40, 40), 128).save(small, "PNG")
client.post(route, data={"label": "grey"}, files=[("file", ("small.png", small.getvalue()))])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
answer = client.post(route, data={"label": "grey"}, files=[("file", ("huge.png", huge))])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(answer.status_code, (after - before) / 1024)
"""


def test_uploading_a_huge_image_adds_under_200_mb_to_the_server(huge_png, tmp_path):
    """Peak resident memory (Linux's ru_maxrss, in KiB) of a fresh server process before
    and after the upload (after a small one, so that what the first upload loads is
    counted before); decoding it in colour would take 13,000^2 x 4 bytes = 645 MB."""
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png)
    store = tmp_path / "store"
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(store)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    status, added_mb = measured.stdout.split()
    assert status == "200"
    assert float(added_mb) < 200
    stored = sorted(f.stat().st_size for f in (store / "images").rglob("*.png"))
    assert len(stored) == 2 and stored[-1] < 10_000


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` RGB pixels (it holds no pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_an_image_too_large_to_decode_is_refused_with_its_size(client):
    recogniser = client.post("/api/recognisers", json={"name": "big"}).json()["id"]
    refused = _upload(
        client, recogniser, "red", ("wall.png", _png_header_only(9000, 9000), "image/png")
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert "wall.png is 9000 x 9000 pixels" in error
    assert f"{9000 * 9000 * 4 / 2**20:.0f} MB to decode, at most {MAX_DECODED_MB} MB" in error
    assert "shrink it" in error


def test_thumbnails_are_small_jpegs_and_small_uploads_are_kept_as_sent(client, personaliser):
    recogniser = client.post("/api/recognisers", json={"name": "thumbs"}).json()["id"]
    wide, small = _png("red", (1000, 500)), _png("blue", (40, 30))
    _upload(client, recogniser, "red", ("wide.png", wide, "image/png")).raise_for_status()
    _upload(client, recogniser, "blue", ("small.png", small, "image/png")).raise_for_status()
    bound = STORED_SIZE_FACTOR * personaliser.image_size
    assert _stored_sizes(client, recogniser, "red") == [(bound, bound // 2)]
    [blue] = client.get(f"/api/recognisers/{recogniser}").json()["classes"][1]["examples"]
    assert client.get(f"/api/recognisers/{recogniser}/examples/{blue}/image").content == small
    [red] = client.get(f"/api/recognisers/{recogniser}").json()["classes"][0]["examples"]
    thumb = client.get(f"/api/recognisers/{recogniser}/examples/{red}/image?thumbnail=true")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (112, 56)


def test_labels_may_hold_apostrophes_and_ampersands(client):
    recogniser = client.post("/api/recognisers", json={"name": "Tom & Jerry's"}).json()["id"]
    for label in ("it's", "Tom & Jerry"):
        assert (
            client.post(f"/api/recognisers/{recogniser}/classes", json={"label": label}).status_code
            == 200
        )
    shown = client.get(f"/api/recognisers/{recogniser}").json()
    assert shown["name"] == "Tom & Jerry's"
    assert [c["label"] for c in shown["classes"]] == ["it's", "Tom & Jerry"]
    for label in ("a/b", "<b>", "back`tick"):
        assert (
            client.post(f"/api/recognisers/{recogniser}/classes", json={"label": label}).status_code
            == 400
        )


def test_an_upload_to_a_class_deleted_elsewhere_is_refused_unless_it_asks_to_create(client):
    recogniser = client.post("/api/recognisers", json={"name": "stale"}).json()["id"]
    image = ("r.png", photo(COLOURS["red"]), "image/png")
    client.post(f"/api/recognisers/{recogniser}/classes", json={"label": "mug"}).raise_for_status()
    assert _upload(client, recogniser, "mug", image, create="false").status_code == 200
    client.delete(f"/api/recognisers/{recogniser}/classes/mug").raise_for_status()
    stale = _upload(client, recogniser, "mug", image, create="false")
    assert stale.status_code == 404 and "no class 'mug'" in stale.json()["error"]
    assert client.get(f"/api/recognisers/{recogniser}").json()["classes"] == []
    assert _upload(client, recogniser, "mug", image, create="maybe").status_code == 400
    assert _upload(client, recogniser, "mug", image).json() == {"mug": 1}  # API default: create


def test_the_page_answers_head_and_ships_a_favicon(client):
    assert client.head("/").status_code == 200
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in icon.content
    assert 'rel="icon"' in client.get("/").text
