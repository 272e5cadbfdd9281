"""The page in headless Chromium against a real server: build, teach and try a recogniser.

Uses Debian's Chromium (``scripts/install-test-browser``) driven by Playwright, with a fake
camera for the webcam burst. Set ``LITEMETA_SCREENSHOT=path.png`` to keep a screenshot.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from litemeta.serve.app import create_app
from litemeta.serve.recogniser import Personaliser
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo
from tests.serve.helpers import ROOT, api_client, free_port, running, serving_process

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-browser first")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def personaliser(tiny_run) -> Personaliser:
    return Personaliser.from_checkpoint(tiny_run)


def _open(browser: Browser, url: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["camera"], origin=url.split("/?")[0])
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    return page


@pytest.fixture
def page(browser, personaliser, tmp_path):
    app = create_app(personaliser, Store(tmp_path / "store"), checkpoint_name="run")
    with running(app) as url:
        page = _open(browser, url)
        yield page
        page.context.close()


def _card(page: Page, label: str):
    return page.locator(f'.class-card[data-label="{label}"]')


def _files(colour: str, count: int) -> list[dict]:
    return [
        {"name": f"{colour}-{i}.png", "mimeType": "image/png", "buffer": photo(COLOURS[colour], i)}
        for i in range(count)
    ]


def _record(page: Page, label: str, at_least: int, touch: bool = False) -> int:
    """Hold a class's "Hold to record" button (with the mouse, or a finger) until it has
    counted ``at_least`` webcam frames, release it, and wait for the frames to be added;
    returns how many were."""
    card = _card(page, label)
    before = card.locator(".thumbs img").count()
    counted = card.locator(".record")
    finger = {"pointerType": "touch", "pointerId": 7, "isPrimary": True, "bubbles": True}
    if touch:
        counted.dispatch_event("pointerdown", finger)
    else:
        counted.hover()
        page.mouse.down()
    expect(counted).to_have_text(re.compile(r"Recording: \d+ frames"))
    while int(re.search(r"\d+", counted.inner_text())[0]) < at_least:
        time.sleep(0.05)
    if touch:
        counted.dispatch_event("pointerup", finger)
    else:
        page.mouse.up()
    status = card.locator(".card-status")
    expect(status).to_contain_text(re.compile(r"Added \d+ images?"))
    recorded = int(re.search(r"Added (\d+) image", status.inner_text())[1])
    expect(card.locator(".thumbs img")).to_have_count(before + recorded)
    return recorded


def _drop(page: Page, label: str, files: list[dict]) -> None:
    """Drop ``files`` on a class's drop zone, as a file manager would."""
    encoded = [{"name": f["name"], "data": base64.b64encode(f["buffer"]).decode()} for f in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: "image/png" }));
            }
            return transfer;
        }""",
        encoded,
    )
    _card(page, label).locator(".drop").dispatch_event("drop", {"dataTransfer": transfer})


def test_teach_and_try_a_recogniser_in_the_browser(page: Page, tmp_path):
    expect(page.locator("#model-info")).to_have_text(
        "ResNet-18, meta-trained on emoji with ProtoNets, 32 px"
    )
    page.fill("#new-name", "Desk things")
    page.click("#create-form button")
    expect(page.locator("#recogniser-name")).to_have_text("Desk things")

    for count, label in enumerate(("red", "blue", "camera", "<b>bold</b>"), start=1):
        page.fill("#new-class", label)
        page.click("#class-form button")
        expect(page.locator(".class-card")).to_have_count(min(count, 3))
    expect(page.locator("#class-error")).to_contain_text("'<b>bold</b>' contains / < >")
    expect(page.locator("b")).to_have_count(0)
    expect(page.locator(".class-card")).to_have_count(3)

    _card(page, "red").locator(".pick").set_input_files(_files("red", 4))
    expect(_card(page, "red").locator(".thumbs img")).to_have_count(4)
    _card(page, "red").locator(".thumbs button").last.click()
    expect(_card(page, "red").locator(".thumbs img")).to_have_count(3)
    expect(_card(page, "red").locator(".count")).to_have_text("3 examples")

    page.fill("#new-class", "spare")
    page.click("#class-form button")
    _card(page, "spare").locator(".rename").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("extra")
    page.keyboard.press("Enter")
    expect(_card(page, "extra")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    _card(page, "extra").locator(".remove").click()
    expect(page.locator(".class-card")).to_have_count(3)
    _drop(page, "blue", _files("blue", 3))
    expect(_card(page, "blue").locator(".thumbs img")).to_have_count(3)
    recorded = _record(page, "camera", 8)
    expect(_card(page, "camera").locator(".card-status")).to_contain_text(
        f"camera now has {recorded} examples"
    )

    not_an_image = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}
    _card(page, "red").locator(".pick").set_input_files([not_an_image])
    expect(_card(page, "red").locator(".card-error")).to_contain_text(
        "cannot decode image notes.txt"
    )
    expect(_card(page, "red").locator(".thumbs img")).to_have_count(3)

    page.click("#teach")
    taught = f"Taught 3 classes from {6 + recorded} examples"
    expect(page.locator("#teach-result")).to_contain_text(taught + " in")
    page.set_input_files(
        "#try-file",
        [
            {
                "name": "held-out.jpg",
                "mimeType": "image/jpeg",
                "buffer": photo(COLOURS["red"], 5, kind="JPEG"),
            }
        ],
    )
    expect(page.locator("#predictions li")).to_have_count(3)  # every class
    expect(page.locator("#predictions li").first.locator(".label")).to_have_text("red")

    page.click("#live")
    expect(page.locator("#live")).to_have_text("Stop live webcam")
    expect(page.locator("#try-view #camera-video")).to_be_visible()  # beside its predictions
    expect(page.locator("#predictions li").first.locator(".label")).to_have_text("camera")
    page.click("#live")
    expect(page.locator("#camera")).to_be_hidden()

    page.set_input_files(
        "#try-file",
        [
            {
                "name": "again.jpg",
                "mimeType": "image/jpeg",
                "buffer": photo(COLOURS["red"], 6, kind="JPEG"),
            }
        ],
    )
    expect(page.locator("#predictions li").first.locator(".label")).to_have_text("red")
    screenshot = tmp_path / "page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("LITEMETA_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["LITEMETA_SCREENSHOT"])

    page.reload()
    expect(page.locator("#recogniser-list button")).to_have_count(1)
    expect(page.locator("#recogniser-list button")).to_contain_text("Desk things")
    expect(page.locator("#recogniser-list button")).to_contain_text(
        f"{6 + recorded} examples, taught"
    )
    expect(page.locator("#teach-result")).to_contain_text(taught)
    expect(_card(page, "camera").locator(".thumbs img")).to_have_count(recorded)


def _wait_until_loaded(image: Locator, timeout_s: float = 30.0) -> None:
    """Wait for an image to finish loading. (``page.wait_for_function`` would poll with an
    ``eval`` that the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout_s
    while image.evaluate("img => img.naturalWidth") == 0:
        assert time.monotonic() < deadline, "the thumbnail never loaded"
        time.sleep(0.05)


def test_the_page_sends_the_token_of_its_address(browser, personaliser, tmp_path):
    app = create_app(personaliser, Store(tmp_path / "store"), token="s3cret")
    with running(app, host="127.0.0.2") as url:
        without = _open(browser, url)
        expect(without.locator("#message")).to_contain_text("this server needs its token")
        without.context.close()
        page = _open(browser, f"{url}/?token=s3cret")
        page.fill("#new-name", "Guarded")
        page.click("#create-form button")
        page.fill("#new-class", "red")
        page.click("#class-form button")
        _card(page, "red").locator(".pick").set_input_files(_files("red", 1))
        thumbnail = _card(page, "red").locator(".thumbs img")
        expect(thumbnail).to_have_count(1)
        _wait_until_loaded(thumbnail)
        status = _card(page, "red").locator(".card-status")
        expect(status).to_have_text("Added 1 image: red now has 1 example.")
        page.context.close()


ATTACK = """async ([target, recogniser]) => {
    const outcomes = {};
    const sent = async (name, path, options) => {
        try {
            await fetch(target + path, { method: "POST", mode: "no-cors", ...options });
            outcomes[name] = "sent";
        } catch (error) {
            outcomes[name] = "blocked: " + error;
        }
    };
    await sent("json as text", "/api/recognisers", {
        headers: { "Content-Type": "text/plain" },
        body: JSON.stringify({ name: "csrf" }),
    });
    const form = new FormData();
    form.append("label", "planted");
    form.append("file", new Blob([new Uint8Array(%s)], { type: "image/png" }), "x.png");
    await sent("upload", `/api/recognisers/${recogniser}/examples`, { body: form });
    await sent("teach", `/api/recognisers/${recogniser}/teach`, {});
    try {
        const response = await fetch(target + "/api/recognisers");
        outcomes.read = "read " + (await response.text());
    } catch (error) {
        outcomes.read = "blocked";
    }
    return outcomes;
}"""

ATTACKER_PAGE = """<!doctype html><title>another site</title>
<form id="plain" method="post" enctype="text/plain" action="%s/api/recognisers">
<input name='{"name": "form-csrf", "x": "' value='"}'></form>"""


def test_a_page_on_another_origin_cannot_change_or_read_the_store(browser, personaliser, tmp_path):
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    store = Store(tmp_path / "store")
    with running(create_app(personaliser, store)) as url:
        own = httpx.Client(base_url=url, headers={"Origin": url})
        recogniser = own.post("/api/recognisers", json={"name": "Mine"}).json()["id"]
        elsewhere = FastAPI()
        elsewhere.get("/")(lambda: HTMLResponse(ATTACKER_PAGE % url))
        with running(elsewhere) as attacker_url:
            assert attacker_url != url  # another port: another origin
            attacker = _open(browser, attacker_url)
            outcomes = attacker.evaluate(ATTACK % list(photo(COLOURS["red"])), [url, recogniser])
            with attacker.expect_navigation():
                attacker.locator("#plain").evaluate("form => form.submit()")
            attacker.context.close()
        # the browser sent the requests (no-cors) but the server refused every one
        assert outcomes["json as text"] == outcomes["upload"] == outcomes["teach"] == "sent"
        assert outcomes["read"] == "blocked"
        [mine] = own.get("/api/recognisers").json()
        assert mine["name"] == "Mine" and mine["classes"] == [] and mine["taught"] is None

        page = _open(browser, url)  # while the app's own page still works
        page.click("#recogniser-list button")
        for label in ("red", "blue"):
            page.fill("#new-class", label)
            page.click("#class-form button")
            _card(page, label).locator(".pick").set_input_files(_files(label, 2))
            expect(_card(page, label).locator(".thumbs img")).to_have_count(2)
        page.click("#teach")
        expect(page.locator("#teach-result")).to_contain_text("Taught 2 classes from 4 examples")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#delete-recogniser")
        expect(page.locator("#recogniser-list button")).to_have_count(0)
        page.context.close()
        own.close()
    store.close()


# Each defect the page had, reproduced in Chromium


@pytest.fixture
def served(browser, personaliser, tmp_path):
    """A client of the app's API (another tab or client) and the page, on a free port."""
    with running(create_app(personaliser, Store(tmp_path / "store"))) as url:
        api = api_client(url)
        page = _open(browser, url)
        yield api, page
        page.context.close()
        api.close()


def _taught_elsewhere(api, name: str = "r", **classes: int) -> str:
    """A recogniser made through the API with ``classes`` (label: examples), taught."""
    recogniser = api.post("/api/recognisers", json={"name": name}).json()["id"]
    for label, shots in classes.items():
        files = [("file", (f["name"], f["buffer"], "image/png")) for f in _files(label, shots)]
        api.post(
            f"/api/recognisers/{recogniser}/examples", data={"label": label}, files=files
        ).raise_for_status()
    api.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
    return recogniser


def _open_recogniser(page: Page, name: str) -> None:
    page.reload()
    page.locator("#recogniser-list button", has_text=name).click()
    expect(page.locator("#recogniser-name")).to_have_text(name)


def test_a_refused_teach_says_why_beside_teach_and_never_stays_teaching(served):
    api, page = served
    recogniser = _taught_elsewhere(api, red=2, blue=2)
    _open_recogniser(page, "r")
    teach_error, result = page.locator("#teach-error"), page.locator("#teach-result")

    page.route("**/teach", lambda route: route.abort())  # the server is down
    page.click("#teach")
    expect(teach_error).to_contain_text("the server cannot be reached")
    expect(result).to_contain_text("Taught 2 classes from 4 examples")
    expect(page.locator("#teach")).to_be_enabled()
    expect(page.locator("#message")).to_be_hidden()
    page.unroute("**/teach")

    api.post(f"/api/recognisers/{recogniser}/classes", json={"label": "mug"})  # another tab
    page.click("#teach")
    expect(teach_error).to_contain_text("class 'mug' has no examples")
    expect(result).to_contain_text('Not taught yet. Add examples to "mug"')
    expect(_card(page, "mug")).to_have_count(1)  # the page caught up with the other tab
    expect(page.locator("#teach")).to_be_disabled()

    page.once("dialog", lambda dialog: dialog.accept())
    _card(page, "mug").locator(".remove").click()
    expect(page.locator("#teach")).to_be_enabled()
    api.delete(f"/api/recognisers/{recogniser}")  # deleted elsewhere
    page.click("#teach")
    expect(page.locator("#message")).to_contain_text('"r" was deleted in another tab or client')
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#recogniser-list button")).to_have_count(0)


def test_try_and_export_errors_show_beside_them_and_a_stale_page_catches_up(served):
    api, page = served
    recogniser = _taught_elsewhere(api, red=2, blue=2)
    _open_recogniser(page, "r")
    not_an_image = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}
    page.set_input_files("#try-file", [not_an_image])
    expect(page.locator("#try-error")).to_contain_text("cannot decode image notes.txt")
    expect(page.locator("#message")).to_be_hidden()

    files = [("file", ("red.png", photo(COLOURS["red"], 9), "image/png"))]
    api.post(f"/api/recognisers/{recogniser}/examples", data={"label": "red"}, files=files)
    page.click("#export-float")  # the page still says "Taught"
    expect(page.locator("#export-error")).to_contain_text("teach 'r' first")
    expect(page.locator("#export-error")).to_contain_text("The page was out of date")
    expect(page.locator("#teach-result")).to_contain_text("Not taught yet")
    expect(_card(page, "red").locator(".thumbs img")).to_have_count(3)
    expect(page.locator("#export-float")).to_be_hidden()
    expect(page.locator("#live")).to_be_disabled()
    expect(page.locator("#try-note")).to_have_text("Teach it first.")

    page.click("#teach")
    expect(page.locator("#teach-result")).to_contain_text("Taught 2 classes from 5 examples")
    api.post(f"/api/recognisers/{recogniser}/classes", json={"label": "green"})
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # back to this tab
    expect(page.locator("#message")).to_contain_text('"r" was changed in another tab or client')
    expect(_card(page, "green")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    _card(page, "green").locator(".remove").click()
    page.click("#teach")
    expect(page.locator("#teach-result")).to_contain_text("Taught 2 classes from 5 examples")
    for button, suffix in (("#export-float", "r.onnx"), ("#export-int8", "r-int8.onnx")):
        with page.expect_download() as download:
            page.click(button)
        assert download.value.suggested_filename == suffix
    api.post(f"/api/recognisers/{recogniser}/examples", data={"label": "blue"}, files=files)
    page.set_input_files("#try-file", _files("red", 1))
    expect(page.locator("#try-error")).to_contain_text("teach 'r' first")
    expect(page.locator("#try-error")).to_contain_text("The page was out of date")
    expect(page.locator("#teach-result")).to_contain_text("Not taught yet")


def test_labels_long_or_with_apostrophes_names_alike_and_deleted_classes(served):
    api, page = served
    for _ in range(2):
        page.fill("#new-name", "Desk")
        page.click("#create-form button")
        expect(page.locator("#recogniser-name")).to_have_text("Desk")
    items = page.locator("#recogniser-list button")
    expect(items).to_have_count(2)
    expect(items.nth(0).locator(".made")).to_contain_text("made ")
    expect(items.nth(1).locator(".made")).to_contain_text("made ")

    page.fill("#new-class", "x" * 70)  # no longer cut at 64 without a word
    expect(page.locator("#class-error")).to_have_text(
        "70 characters: at most 64 are taken; shorten it."
    )
    page.click("#class-form button")
    expect(page.locator("#class-error")).to_contain_text("has 70 characters; use at most 64")
    for label in ("it's", "Tom & Jerry"):
        page.fill("#new-class", label)
        page.click("#class-form button")
        expect(page.locator(".class-card .class-label", has_text=label)).to_have_count(1)
    expect(page.locator("#class-error")).to_be_hidden()
    expect(page.locator("#teach")).to_be_disabled()
    expect(page.locator("#teach-result")).to_contain_text('Add examples to "it\'s", "Tom & Jerry"')

    recogniser = items.nth(1).get_attribute("data-id")
    api.delete(f"/api/recognisers/{recogniser}/classes/it's")  # deleted in another tab
    page.locator('.class-card[data-label="it\'s"] .pick').set_input_files(_files("red", 1))
    expect(page.locator("#message")).to_contain_text('no class "it\'s"')
    expect(page.locator(".class-card")).to_have_count(1)
    labels = [c["label"] for c in api.get(f"/api/recognisers/{recogniser}").json()["classes"]]
    assert labels == ["Tom & Jerry"]  # not silently made again


def test_thumbnails_are_small_and_the_webcam_records_while_held(served):
    _, page = served
    page.fill("#new-name", "Cam")
    page.click("#create-form button")
    page.fill("#new-class", "wall")
    page.click("#class-form button")
    expect(page.locator("#teach")).to_be_disabled()
    expect(page.locator("#live")).to_be_disabled()
    big = Image.new("RGB", (600, 300), COLOURS["green"])
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    _card(page, "wall").locator(".pick").set_input_files(
        [{"name": "wall.png", "mimeType": "image/png", "buffer": buffer.getvalue()}]
    )
    thumbnail = _card(page, "wall").locator(".thumbs img")
    expect(thumbnail).to_have_count(1)
    _wait_until_loaded(thumbnail)
    assert thumbnail.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [112, 56]

    page.fill("#new-class", "camera")
    page.click("#class-form button")
    record = _card(page, "camera").locator(".record")
    record.hover()
    page.mouse.down()
    expect(record).to_have_text(re.compile(r"Recording: [1-9] frames?"))  # counted as they come
    expect(_card(page, "camera").locator(".card-camera video")).to_be_visible()
    page.mouse.up()
    expect(page.locator("#camera")).to_be_hidden()
    expect(_card(page, "camera").locator(".card-status")).to_contain_text("Added")
    assert _record(page, "camera", 3) >= 3
    expect(page.locator("#camera")).to_be_hidden()
    expect(page.locator("#teach")).to_be_enabled()


# The whole page on `litemeta serve` without a checkpoint, on a phone-sized screen

EMOJI = ROOT / "litemeta" / "datasets" / "emoji" / "emoji-64.zip"
#: Classes taught from files (label: emoji folder), visually distinct, and an untaught one,
#: whose familiarity is 0 with the pretrained model (less familiar than every left-out
#: example by more than a gap), far from the threshold rather than near it.
TAUGHT = {"banana": "1f34c_banana", "soccer ball": "26bd_soccer-ball", "rocket": "1f680_rocket"}
UNTAUGHT = "1f3a9_top-hat"
#: The styles taught from; the tries use another style (the 3D renderings).
TEACH_STYLES = ("google", "twitter", "openmoji", "fluent-color", "fluent-flat")
TRY_STYLE = "fluent-3d"
PHONE = {"width": 390, "height": 844}


def _emoji(folder: str, style: str) -> dict:
    with zipfile.ZipFile(EMOJI) as archive:
        [name] = [n for n in archive.namelist() if n.startswith(f"{folder}/{style}/")]
        return {
            "name": f"{folder}-{style}.webp",
            "mimeType": "image/webp",
            "buffer": archive.read(name),
        }


def test_teach_four_classes_and_try_them_on_a_phone_without_a_checkpoint(browser, tmp_path):
    port = free_port("127.0.0.1")
    argv = ["serve", "--port", str(port), "--store", str(tmp_path / "store")]
    with serving_process(argv, port):
        url = f"http://127.0.0.1:{port}"
        api = api_client(url)
        context = browser.new_context(viewport=PHONE, has_touch=True)
        context.grant_permissions(["camera"], origin=url)
        page = context.new_page()
        uncaught = []
        page.on("pageerror", lambda error: uncaught.append(str(error)))
        page.set_default_timeout(30_000)
        page.goto(url)
        expect(page.locator("#model-info")).to_contain_text(
            "EfficientNet-Lite0, pretrained on ImageNet, not meta-trained"
        )
        expect(page.locator("#model-hint")).to_contain_text("litemeta train")

        page.fill("#new-name", "Emoji")
        page.click("#create-form button")
        for label, folder in TAUGHT.items():
            page.fill("#new-class", label)
            page.click("#class-form button")
            files = [_emoji(folder, style) for style in TEACH_STYLES]
            _card(page, label).locator(".pick").set_input_files(files)
            expect(_card(page, label).locator(".thumbs img")).to_have_count(len(files))

        # another tab adds a class without examples: Teach is refused, and says why
        [recogniser] = api.get("/api/recognisers").json()
        api.post(f"/api/recognisers/{recogniser['id']}/classes", json={"label": "webcam"})
        page.click("#teach")
        expect(page.locator("#teach-error")).to_contain_text("class 'webcam' has no examples")
        expect(page.locator("#teach-result")).to_contain_text(
            'Not taught yet. Add examples to "webcam"'
        )
        expect(page.locator("#teach")).to_be_disabled()

        recorded = _record(page, "webcam", 5, touch=True)
        page.click("#teach")
        examples = 3 * len(TEACH_STYLES) + recorded
        expect(page.locator("#teach-result")).to_contain_text(
            f"Taught 4 classes from {examples} examples"
        )
        expect(page.locator("#teach-error")).to_be_hidden()

        quality = api.get(f"/api/recognisers/{recogniser['id']}").json()["quality"]
        rows = page.locator("#per-class li")
        expect(rows).to_have_count(4)
        for row, expected in zip(rows.all(), quality["per_class"], strict=True):
            shown = f"{expected['correct']} of {expected['examples']} right"
            expect(row).to_contain_text(expected["label"])
            expect(row.locator(".accuracy")).to_contain_text(shown)
        cells = page.locator("#confusion tr").all()[1:]
        assert [[int(n) for n in row.locator("td").all_inner_texts()] for row in cells] == quality[
            "confusion"
        ]
        expect(page.locator("#confused li")).to_have_count(len(quality["confused"]))
        for item, mistake in zip(
            page.locator("#confused li").all(), quality["confused"], strict=True
        ):
            expect(item).to_contain_text(
                f"this photo of {mistake['label']} looks like {mistake['looks_like']}"
            )

        page.set_input_files("#try-file", [_emoji(TAUGHT["rocket"], TRY_STYLE)])
        expect(page.locator("#verdict")).to_have_text("rocket")
        expect(page.locator("#predictions li")).to_have_count(4)  # every class's probability
        page.set_input_files("#try-file", [_emoji(UNTAUGHT, TRY_STYLE)])
        expect(page.locator("#verdict")).to_have_text("Not one of these")
        expect(page.locator("#predictions li")).to_have_count(4)
        calibrated = page.locator("#threshold-value").inner_text()
        page.focus("#threshold")
        page.keyboard.press("Home")  # threshold 0: always one of these
        expect(page.locator("#threshold-value")).to_have_text("0.00")
        expect(page.locator("#verdict")).not_to_have_text("Not one of these")
        assert api.get(f"/api/recognisers/{recogniser['id']}").json()["threshold"] == 0
        page.click("#threshold-reset")
        expect(page.locator("#threshold-value")).to_have_text(calibrated)
        expect(page.locator("#verdict")).to_have_text("Not one of these")

        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        for bar in page.locator("#predictions .bar, #per-class .bar").all():
            assert bar.bounding_box()["width"] >= 60  # the bars keep their room
        screenshot = tmp_path / "phone.png"
        page.screenshot(path=str(screenshot), full_page=True)
        if os.environ.get("LITEMETA_SCREENSHOT"):
            shutil.copy(screenshot, os.environ["LITEMETA_SCREENSHOT"].replace(".png", "-phone.png"))
        assert uncaught == []
        context.close()
        api.close()
