"""The API in-process: edits that overlap teaching or uploads, stored images gone bad,
labels, refusals and the shape of every error."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

import litemeta.serve.store as store_module
from litemeta.serve.app import GRACEFUL_SHUTDOWN_SECONDS, create_app, run_server
from litemeta.serve.recogniser import Personaliser
from litemeta.serve.records import Taught
from litemeta.serve.routes import requests as request_readers
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo

WAIT = 30  # seconds a paused step waits at most, so that a broken test fails, not hangs


@pytest.fixture(scope="module")
def personaliser(tiny_run) -> Personaliser:
    return Personaliser.from_checkpoint(tiny_run)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path)


def _client(personaliser: Personaliser, store: Store, **options) -> TestClient:
    app = create_app(personaliser, store, **options)
    origin = {"Origin": "http://testserver"}  # as the page sends it
    return TestClient(app, raise_server_exceptions=False, headers=origin)


@pytest.fixture
def client(personaliser, store) -> Iterator[TestClient]:
    with _client(personaliser, store) as client:
        yield client


def _add(client: TestClient, recogniser: str, label: str, shots: int = 2):
    colour = COLOURS.get(label, (120, 120, 120))
    files = [("file", (f"{label}{i}.png", photo(colour, i), "image/png")) for i in range(shots)]
    return client.post(
        f"/api/recognisers/{recogniser}/examples", data={"label": label}, files=files
    )


def _recogniser(client: TestClient, *labels: str) -> str:
    recogniser = client.post("/api/recognisers", json={"name": "r"}).json()["id"]
    for label in labels:
        assert _add(client, recogniser, label).status_code == 200
    return recogniser


def _predict(client: TestClient, recogniser: str):
    image = ("q.png", photo(COLOURS["red"], 5), "image/png")
    return client.post(f"/api/recognisers/{recogniser}/predict", files={"file": image})


class Pause:
    """Wraps a function so that its first call waits, once it has started, until released."""

    def __init__(self, function: Callable) -> None:
        self.function = function
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args, **kwargs):
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(WAIT), "never released"
        return self.function(*args, **kwargs)


@contextmanager
def _paused(request: Callable[[], object], pause: Pause) -> Iterator[Future]:
    """Start ``request`` in a thread; the block runs while it waits in ``pause``, then the
    request is released and its future returned."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(request)
        assert pause.started.wait(WAIT), "the request never reached the paused step"
        try:
            yield future
        finally:
            pause.release.set()
            future.result(WAIT)


# An edit while teaching


@pytest.mark.parametrize(
    ("before", "edit", "after"),
    [
        (["red", "green"], lambda c, r: _add(c, r, "blue"), ["red", "green", "blue"]),
        (
            ["red", "green", "blue"],
            lambda c, r: c.delete(f"/api/recognisers/{r}/classes/blue"),
            ["red", "green"],
        ),
    ],
    ids=["add-class", "delete-class"],
)
def test_an_edit_while_teaching_voids_that_teaching(
    personaliser, client, monkeypatch, before, edit, after
):
    recogniser = _recogniser(client, *before)
    pause = Pause(personaliser.learner.adapt)
    monkeypatch.setattr(personaliser.learner, "adapt", pause)
    with _paused(lambda: client.post(f"/api/recognisers/{recogniser}/teach"), pause) as teach:
        assert edit(client, recogniser).status_code == 200
    assert teach.result().status_code == 409
    assert "changed while it was being taught" in teach.result().json()["error"]
    assert client.get(f"/api/recognisers/{recogniser}").json()["taught"] is None
    assert _predict(client, recogniser).status_code == 409
    taught = client.post(f"/api/recognisers/{recogniser}/teach").json()
    assert taught["classes"] == after
    answer = _predict(client, recogniser).json()
    assert {p["label"] for p in answer["probabilities"]} == set(after)


def test_a_restarted_server_refuses_a_record_that_does_not_match_the_examples(personaliser, store):
    with _client(personaliser, store) as client:
        recogniser = _recogniser(client, "red", "green", "blue")
    stale = Taught(["red", "green"], 4, 0.25)  # as left by an older server
    assert store.set_taught(recogniser, stale, store.get(recogniser).version)
    with _client(personaliser, store) as client:
        response = _predict(client, recogniser)
        assert response.status_code == 409
        assert (
            "taught 4 examples of red, green but now has 6 of red, green, blue"
            in (response.json()["error"])
        )
        assert client.get(f"/api/recognisers/{recogniser}").json()["taught"] is None


# Deleting a recogniser while its examples are uploaded


@pytest.mark.parametrize("when", ["before", "after"])
def test_deleting_a_recogniser_during_an_upload_answers_404_and_leaves_nothing(
    client, store, monkeypatch, when
):
    recogniser = _recogniser(client)
    write, pause = store_module._write_atomically, Pause(lambda: None)

    def paused_write(path: Path, data: bytes) -> None:  # before or after the file is written
        if when == "before":
            pause()
        write(path, data)
        if when == "after":
            pause()

    monkeypatch.setattr(store_module, "_write_atomically", paused_write)
    with _paused(lambda: _add(client, recogniser, "red"), pause) as upload:
        assert client.delete(f"/api/recognisers/{recogniser}").status_code == 200
    assert upload.result().status_code == 404
    assert "no recogniser" in upload.result().json()["error"]
    assert list(store.images.iterdir()) == []


# Bodies the parsers choke on


def test_deeply_nested_json_is_refused(client):
    response = client.post(
        "/api/recognisers",
        content="[" * 200_000 + "]" * 200_000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "send a JSON object" in response.json()["error"]


def test_a_label_that_is_not_utf8_is_refused(client):
    recogniser = _recogniser(client)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="label"\r\n\r\n'.encode()
        + "Café".encode("latin-1")
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + photo(COLOURS["red"])
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        f"/api/recognisers/{recogniser}/examples",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert "form field 'label' is not utf-8 text" in response.json()["error"]
    assert client.get(f"/api/recognisers/{recogniser}").json()["classes"] == []


# Stored images that went missing or bad


def test_a_missing_or_corrupt_example_image_is_named(personaliser, store):
    with _client(personaliser, store) as client:
        recogniser = _recogniser(client, "red", "green")
        client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
        red, green = store.get(recogniser).classes.values()
        red[0].path.unlink()
        green[1].path.write_bytes(b"not an image any more")
        image = client.get(f"/api/recognisers/{recogniser}/examples/{red[0].id}/image")
        assert image.status_code == 404
        assert f"example {red[0].id} of class 'red' is missing" in image.json()["error"]
        teach = client.post(f"/api/recognisers/{recogniser}/teach")
        assert teach.status_code == 409
        assert f"example {red[0].id} of class 'red' cannot be used" in teach.json()["error"]
        assert "delete it" in teach.json()["error"]
    with _client(personaliser, store) as client:  # restarted: adapts again to predict
        response = _predict(client, recogniser)
        assert response.status_code == 409 and red[0].id in response.json()["error"]
        client.delete(f"/api/recognisers/{recogniser}/examples/{red[0].id}").raise_for_status()
        teach = client.post(f"/api/recognisers/{recogniser}/teach")
        assert teach.status_code == 409
        assert f"example {green[1].id} of class 'green'" in teach.json()["error"]


# Cheap checks first


def test_predict_before_teaching_answers_without_decoding(client, monkeypatch):
    recogniser = _recogniser(client, "red", "green")

    def not_allowed(*args):
        raise AssertionError("decoded")

    monkeypatch.setattr(request_readers, "check_image", not_allowed)
    response = _predict(client, recogniser)
    assert response.status_code == 409 and "teach 'r' first" in response.json()["error"]


# Labels


def test_labels_that_differ_only_in_case_are_one_class(client):
    recogniser = _recogniser(client, "red")
    base = f"/api/recognisers/{recogniser}/classes"
    client.post(base, json={"label": "Cat"}).raise_for_status()
    refused = client.post(base, json={"label": "cat"})
    assert refused.status_code == 400 and "a class 'Cat' exists already" in refused.json()["error"]
    refused = _add(client, recogniser, "CAT")
    assert refused.status_code == 400 and "'Cat'" in refused.json()["error"]
    assert client.patch(f"{base}/red", json={"label": "CAT"}).status_code == 400
    assert client.patch(f"{base}/Cat", json={"label": "cat"}).json() == {"red": 2, "cat": 0}


def test_labels_in_the_path_are_normalised_like_labels_in_the_body(client):
    recogniser = _recogniser(client, "Café", "green")
    base = f"/api/recognisers/{recogniser}/classes"
    decomposed = unicodedata.normalize("NFD", "Café")
    assert client.patch(f"{base}/{decomposed}", json={"label": " Bar "}).status_code == 200
    assert client.delete(f"{base}/%20Bar%20").json() == {"green": 2}


def test_re_adding_a_class_or_renaming_it_to_itself_keeps_the_teaching(client):
    recogniser = _recogniser(client, "red", "green")
    client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
    base = f"/api/recognisers/{recogniser}/classes"
    client.post(base, json={"label": "red"}).raise_for_status()
    client.patch(f"{base}/green", json={"label": "green"}).raise_for_status()
    assert client.get(f"/api/recognisers/{recogniser}").json()["taught"] is not None
    assert _predict(client, recogniser).status_code == 200


# Errors, tokens and limits


def test_unknown_routes_and_methods_answer_with_an_error(client):
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "no page or API route /api/nothing-here; the API is in docs/serve.md"
    }
    wrong = client.put("/api/recognisers")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
    assert wrong.json() == {"error": "/api/recognisers does not take PUT requests"}


def test_the_token_comes_before_the_size_limit_and_its_scheme_ignores_case(personaliser, store):
    with _client(personaliser, store, token="s3cret", max_upload_mb=1) as client:
        big = client.post(
            "/api/recognisers", content=b"x" * 2**21, headers={"Content-Type": "text/plain"}
        )
        assert big.status_code == 401
        for scheme in ("bearer", "BEARER", "Bearer"):
            headers = {"Authorization": f"{scheme} s3cret"}
            assert client.get("/api/recognisers", headers=headers).status_code == 200


def test_ctrl_c_waits_for_open_requests_only_briefly(tmp_path, monkeypatch, personaliser):
    given = {}
    monkeypatch.setattr(Personaliser, "from_checkpoint", lambda *args: personaliser)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: given.update(vars(self)))
    run_server(tmp_path, port=0, store=tmp_path)
    assert given["config"].timeout_graceful_shutdown == GRACEFUL_SHUTDOWN_SECONDS <= 5


def test_a_classifier_without_leave_one_out_is_answered_501_naming_what_to_add(
    personaliser, client, monkeypatch
):
    from litemeta.learners.base import TaskClassifier
    from litemeta.learners.classifiers import PrototypeClassifier

    monkeypatch.setattr(PrototypeClassifier, "logits_without", TaskClassifier.logits_without)
    recogniser = _recogniser(client, "red", "green")
    response = client.post(f"/api/recognisers/{recogniser}/teach")
    assert response.status_code == 501
    assert "PrototypeClassifier cannot rebuild its head" in response.json()["error"]
    assert "give it logits_without" in response.json()["error"]
