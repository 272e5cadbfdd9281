"""The JSON API against a real server: teach, predict, persistence, refusals, the token."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import onnx
import onnxruntime
import pytest

from litemeta.data.images import decode_image
from litemeta.serve.app import create_app, run_server
from litemeta.serve.guards import needs_token
from litemeta.serve.recogniser import Personaliser
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo
from tests.serve.helpers import api_client, free_port, running, serving_process


@pytest.fixture(scope="module")
def personaliser(tiny_run) -> Personaliser:
    return Personaliser.from_checkpoint(tiny_run)


def _app(personaliser: Personaliser, store: Path, **options):
    return create_app(personaliser, Store(store), **options)


def _teach_colours(client: httpx.Client, shots: int = 3) -> str:
    recogniser = client.post("/api/recognisers", json={"name": "Colours"}).json()["id"]
    for label, colour in COLOURS.items():
        files = [("file", (f"{label}{i}.png", photo(colour, i), "image/png")) for i in range(shots)]
        response = client.post(
            f"/api/recognisers/{recogniser}/examples", data={"label": label}, files=files
        )
        assert response.status_code == 200, response.text
    assert response.json() == {label: shots for label in COLOURS}
    return recogniser


def _answer(client: httpx.Client, recogniser: str, image: bytes) -> dict:
    response = client.post(
        f"/api/recognisers/{recogniser}/predict", files={"file": ("q.jpg", image, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    top = answer["probabilities"][0]["label"]
    assert answer["label"] == (None if answer["none_of_these"] else top)
    return answer


def _predict(client: httpx.Client, recogniser: str, image: bytes) -> list[dict]:
    """Every class with its probability, most probable first."""
    return _answer(client, recogniser, image)["probabilities"]


def test_teach_predict_survives_a_restart(personaliser, tmp_path):
    held_out = photo(COLOURS["green"], variant=5, kind="JPEG")
    store = Store(tmp_path)
    with running(create_app(personaliser, store)) as url, api_client(url) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        recogniser = _teach_colours(client)
        taught = client.post(f"/api/recognisers/{recogniser}/teach").json()
        assert taught["classes"] == list(COLOURS) and taught["examples"] == 9
        assert taught["seconds"] > 0
        before = _predict(client, recogniser, held_out)
    assert before[0]["label"] == "green"
    assert [p["probability"] for p in before] == sorted(
        (p["probability"] for p in before), reverse=True
    )
    assert sum(p["probability"] for p in before) == pytest.approx(1, abs=1e-5)
    store.close()  # the next server's store opens only then
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        [listed] = client.get("/api/recognisers").json()
        assert listed["id"] == recogniser and listed["taught"]["examples"] == 9
        assert [len(c["examples"]) for c in listed["classes"]] == [3, 3, 3]
        after = _predict(client, recogniser, held_out)
    assert [p["label"] for p in after] == [p["label"] for p in before]
    assert [p["probability"] for p in after] == pytest.approx(
        [p["probability"] for p in before], abs=1e-6
    )


def test_fifty_concurrent_predictions_are_all_right(personaliser, tmp_path):
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        recogniser = _teach_colours(client)
        client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
        labels = [list(COLOURS)[i % 3] for i in range(50)]

        def ask(index: int) -> str:
            image = photo(COLOURS[labels[index]], variant=index)
            with api_client(url, timeout=120) as own:
                return _predict(own, recogniser, image)[0]["label"]

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(ask, range(50)))
    assert answers == labels


def _stored_files(store: Path) -> list[Path]:
    return [p for p in (store / "images").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("label", "upload", "status", "message"),
    [
        ("red", ("notes.txt", b"just some text", "text/plain"), 400, "cannot decode image"),
        (
            "red",
            ("cut.jpg", photo(COLOURS["red"], kind="JPEG")[:300], "image/jpeg"),
            400,
            "cut.jpg",
        ),
        ("red", ("empty.png", b"", "image/png"), 400, "is empty"),
        ("red", ("big.png", b"\0" * (50 * 2**20), "image/png"), 413, "larger than 20 MB"),
        ("../../x", ("ok.png", photo(COLOURS["red"]), "image/png"), 400, "contains /"),
        ("<script>", ("ok.png", photo(COLOURS["red"]), "image/png"), 400, "contains < >"),
        ("", ("ok.png", photo(COLOURS["red"]), "image/png"), 400, "is empty"),
    ],
    ids=["text", "truncated-jpeg", "empty", "50MB", "traversal", "markup", "no-label"],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    personaliser, tmp_path, label, upload, status, message
):
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        recogniser = client.post("/api/recognisers", json={"name": "r"}).json()["id"]
        response = client.post(
            f"/api/recognisers/{recogniser}/examples",
            data={"label": label},
            files=[("file", upload)],
        )
        assert response.status_code == status
        assert message in response.json()["error"]
        assert client.get(f"/api/recognisers/{recogniser}").json()["classes"] == []
    assert _stored_files(tmp_path) == []


def test_a_streamed_upload_over_the_limit_is_refused(personaliser, tmp_path):
    app = _app(personaliser, tmp_path, max_upload_mb=1)
    with running(app) as url, api_client(url) as client:
        recogniser = client.post("/api/recognisers", json={"name": "r"}).json()["id"]
        boundary = "b0undary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="label"\r\n\r\nred\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"'
            "\r\nContent-Type: image/png\r\n\r\n"
        ).encode()

        def chunks():  # no Content-Length: the server must count as the body arrives
            yield head
            for _ in range(16):
                yield b"\0" * 2**17

        response = client.post(
            f"/api/recognisers/{recogniser}/examples",
            content=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413
        assert "larger than 1 MB" in response.json()["error"]
    assert _stored_files(tmp_path) == []


def test_one_bad_file_in_a_batch_stores_none_of_it(personaliser, tmp_path):
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        recogniser = client.post("/api/recognisers", json={"name": "r"}).json()["id"]
        files = [
            ("file", ("good.png", photo(COLOURS["red"]), "image/png")),
            ("file", ("bad.png", b"\x89PNG broken", "image/png")),
        ]
        response = client.post(
            f"/api/recognisers/{recogniser}/examples", data={"label": "red"}, files=files
        )
        assert response.status_code == 400 and "bad.png" in response.json()["error"]
    assert _stored_files(tmp_path) == []


@pytest.mark.parametrize("name", ["../../etc", "<b>x</b>", "   ", "a" * 65])
def test_bad_recogniser_names_are_refused(personaliser, tmp_path, name):
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        response = client.post("/api/recognisers", json={"name": name})
        assert response.status_code == 400 and response.json()["error"].startswith("the ")
        assert client.get("/api/recognisers").json() == []


def test_teach_and_predict_say_what_is_missing(personaliser, tmp_path):
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        recogniser = client.post("/api/recognisers", json={"name": "r"}).json()["id"]
        client.post(
            f"/api/recognisers/{recogniser}/examples",
            data={"label": "red"},
            files={"file": ("a.png", photo(COLOURS["red"]), "image/png")},
        ).raise_for_status()
        response = client.post(f"/api/recognisers/{recogniser}/teach")
        assert response.status_code == 400 and "at least two classes" in response.json()["error"]
        client.post(f"/api/recognisers/{recogniser}/classes", json={"label": "blue"})
        response = client.post(f"/api/recognisers/{recogniser}/teach")
        assert (
            response.status_code == 400
            and "class 'blue' has no examples" in response.json()["error"]
        )
        response = client.post(
            f"/api/recognisers/{recogniser}/predict",
            files={"file": ("q.png", photo(COLOURS["red"]), "image/png")},
        )
        assert response.status_code == 409 and "teach 'r' first" in response.json()["error"]
        assert client.get("/api/recognisers/nope").status_code == 404


def test_rename_and_delete_forget_the_teaching(personaliser, tmp_path):
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        recogniser = _teach_colours(client, shots=2)
        client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
        counts = client.patch(
            f"/api/recognisers/{recogniser}/classes/blue", json={"label": "sky"}
        ).json()
        assert counts == {"red": 2, "green": 2, "sky": 2}
        summary = client.get(f"/api/recognisers/{recogniser}").json()
        assert summary["taught"] is None
        example = summary["classes"][0]["examples"][0]
        image = client.get(f"/api/recognisers/{recogniser}/examples/{example}/image")
        assert image.headers["content-type"] == "image/png" and image.content == photo(
            COLOURS["red"], 0
        )
        client.delete(f"/api/recognisers/{recogniser}/examples/{example}").raise_for_status()
        assert client.delete(f"/api/recognisers/{recogniser}/classes/green").json() == {
            "red": 1,
            "sky": 2,
        }
        taught = client.post(f"/api/recognisers/{recogniser}/teach").json()
        assert taught["classes"] == ["red", "sky"] and taught["examples"] == 3
        assert client.delete(f"/api/recognisers/{recogniser}").status_code == 200
        assert client.get("/api/recognisers").json() == []
    assert _stored_files(tmp_path) == []


def test_a_token_guards_the_api_on_another_address(personaliser, tmp_path):
    assert needs_token("127.0.0.2") and needs_token("0.0.0.0")
    assert not needs_token("127.0.0.1") and not needs_token("localhost")
    with pytest.raises(ValueError, match="pass --token"):
        run_server(tmp_path / "unused", host="127.0.0.2", store=tmp_path)
    app = _app(personaliser, tmp_path, token="s3cret")
    with running(app, host="127.0.0.2") as url, api_client(url) as client:
        assert client.get("/api/recognisers").status_code == 401
        assert client.post("/api/recognisers", json={"name": "x"}).status_code == 401
        assert (
            client.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert (
            client.get("/api/recognisers", headers={"Authorization": "Bearer s3cret"}).json() == []
        )
        assert client.get("/api/health", params={"token": "s3cret"}).status_code == 200
        page = client.get("/")  # the page itself holds no data
        assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_exported_model_gives_the_servers_probabilities(personaliser, tmp_path):
    held_out = photo(COLOURS["blue"], variant=4, kind="JPEG")
    with running(_app(personaliser, tmp_path)) as url, api_client(url) as client:
        recogniser = _teach_colours(client)
        export = f"/api/recognisers/{recogniser}/export"
        assert client.get(export, params={"format": "onnx"}).status_code == 409
        client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
        refused = client.get(export, params={"format": "zip"})
        assert refused.status_code == 400 and "format=onnx" in refused.json()["error"]
        response = client.get(export, params={"format": "onnx"})
        assert response.headers["content-disposition"] == (
            "attachment; filename=\"Colours.onnx\"; filename*=UTF-8''Colours.onnx"
        )
        answer = _answer(client, recogniser, held_out)
        served = {p["label"]: p["probability"] for p in answer["probabilities"]}
    model = response.content
    labels = json.loads(
        next(p.value for p in onnx.load_from_string(model).metadata_props if p.key == "labels")
    )
    assert labels == list(COLOURS) == json.loads(response.headers["x-labels"])
    image = decode_image(held_out, personaliser.image_size, "held-out").unsqueeze(0).numpy()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    [probabilities], [rejected], [score] = session.run(
        ["probabilities", "none_of_these", "score"], {"image": image}
    )
    assert probabilities.tolist() == pytest.approx([served[label] for label in labels], abs=1e-4)
    assert bool(rejected) == answer["none_of_these"] and score == pytest.approx(answer["score"])


def test_a_killed_server_keeps_everything_it_answered(tiny_run, tmp_path):
    port = free_port("127.0.0.1")
    argv = ["serve", "--checkpoint", str(tiny_run), "--port", str(port), "--store", str(tmp_path)]
    url = f"http://127.0.0.1:{port}"
    held_out = photo(COLOURS["red"], variant=6, kind="JPEG")
    with serving_process(argv, port) as server, api_client(url) as client:
        recogniser = _teach_colours(client)
        client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
        before = _predict(client, recogniser, held_out)
        server.send_signal(signal.SIGKILL)
        server.wait()
    # the killed server's lock on the store went with it
    with serving_process(argv, port) as again, api_client(url) as client:
        [kept] = client.get("/api/recognisers").json()
        assert kept["taught"]["classes"] == list(COLOURS)
        after = _predict(client, recogniser, held_out)
    assert again.returncode == 0  # Ctrl-C
    assert [p["label"] for p in after] == [p["label"] for p in before]
    assert [p["probability"] for p in after] == pytest.approx(
        [p["probability"] for p in before], abs=1e-6
    )
