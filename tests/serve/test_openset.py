"""The API's "none of these", quality report, thresholds, model description and exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote

import numpy as np
import onnx
import onnxruntime
import pytest
import uvicorn
from starlette.testclient import TestClient

from litemeta.cli import main
from litemeta.data.images import decode_image
from litemeta.serve.app import create_app
from litemeta.serve.calibration import DEFAULT_THRESHOLD
from litemeta.serve.recogniser import Personaliser
from litemeta.serve.routes.predict import ascii_file_name, content_disposition
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo

ORIGIN = {"Origin": "http://testserver"}
#: An image like none of the taught colours: stripes of black and white.
STRIPES = photo((250, 250, 250), 3)


@pytest.fixture(scope="module")
def personaliser(tiny_run) -> Personaliser:
    return Personaliser.from_checkpoint(tiny_run)


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    opened = Store(tmp_path)
    yield opened
    opened.close()


def _client(personaliser: Personaliser, store: Store) -> TestClient:
    return TestClient(
        create_app(personaliser, store), raise_server_exceptions=False, headers=ORIGIN
    )


@pytest.fixture
def client(personaliser, store) -> Iterator[TestClient]:
    with _client(personaliser, store) as client:
        yield client


def _recogniser(client: TestClient, shots: dict[str, int], name: str = "Colours") -> str:
    recogniser = client.post("/api/recognisers", json={"name": name}).json()["id"]
    for label, count in shots.items():
        files = [
            ("file", (f"{i}.png", photo(COLOURS[label], i), "image/png")) for i in range(count)
        ]
        response = client.post(
            f"/api/recognisers/{recogniser}/examples", data={"label": label}, files=files
        )
        assert response.status_code == 200, response.text
    return recogniser


def _predict(client: TestClient, recogniser: str, image: bytes) -> dict:
    response = client.post(
        f"/api/recognisers/{recogniser}/predict", files={"file": ("q.png", image, "image/png")}
    )
    assert response.status_code == 200, response.text
    return response.json()


# The model


def test_health_describes_a_meta_trained_checkpoint(client):
    health = client.get("/api/health").json()
    assert health["model"] == "ResNet-18, meta-trained on emoji with ProtoNets, 32 px"
    assert health["meta_trained"] is True and health["hint"] is None


def test_without_a_checkpoint_the_pretrained_backbone_serves_and_says_so(store):
    personaliser = Personaliser.pretrained()
    assert personaliser.learner.name == "protonets" and personaliser.image_size == 84
    assert personaliser.learner.backbone.pretrained
    with _client(personaliser, store) as client:
        health = client.get("/api/health").json()
    assert health["model"] == (
        "EfficientNet-Lite0, pretrained on ImageNet, not meta-trained, ProtoNets' classifier, 84 px"
    )
    assert health["meta_trained"] is False and "`litemeta train`" in health["hint"]
    assert health["checkpoint"] is None


def test_serve_without_a_checkpoint_serves_the_pretrained_one(tmp_path, monkeypatch, capsys):
    pretrained = Personaliser.pretrained()
    monkeypatch.setattr(Personaliser, "pretrained", lambda *a: pretrained)
    monkeypatch.setattr(Personaliser, "from_checkpoint", lambda *a: pytest.fail("no checkpoint"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    assert main(["serve", "--port", "0", "--store", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "model: EfficientNet-Lite0, pretrained on ImageNet, not meta-trained" in printed
    assert "meta-train the backbone with `litemeta train`" in printed


def test_a_missing_checkpoint_says_how_to_get_one(tmp_path, capsys):
    argv = ["serve", "--checkpoint", str(tmp_path / "runs" / "default"), "--port", "0"]
    assert main([*argv, "--store", str(tmp_path / "store")]) == 1
    error = capsys.readouterr().err
    assert f"no checkpoint at {tmp_path / 'runs' / 'default'}: train one with `litemeta train`" in (
        error
    )
    assert "start `litemeta serve` without --checkpoint to use the pretrained backbone" in error


# Teaching: the quality report and the calibration


def test_teach_answers_the_leave_one_out_quality_and_the_calibration(client):
    recogniser = _recogniser(client, {"red": 3, "green": 3, "blue": 1})
    taught = client.post(f"/api/recognisers/{recogniser}/teach").json()
    quality = taught["quality"]
    assert quality["labels"] == taught["classes"] == ["red", "green", "blue"]
    assert [c["label"] for c in quality["per_class"]] == quality["labels"]
    assert [c["examples"] for c in quality["per_class"]] == [3, 3, 1]
    confusion = quality["confusion"]
    assert [sum(row) for row in confusion] == [3, 3, 0]  # the one blue cannot be left out
    for index, entry in enumerate(quality["per_class"][:2]):
        assert entry["correct"] == confusion[index][index]
        assert entry["accuracy"] == pytest.approx(entry["correct"] / 3)
    assert quality["per_class"][2]["accuracy"] is None
    wrong = sum(confusion[i][j] for i in range(3) for j in range(3) if i != j)
    assert len(quality["confused"]) == wrong
    examples = {
        c["label"]: c["examples"]
        for c in client.get(f"/api/recognisers/{recogniser}").json()["classes"]
    }
    for entry in quality["confused"]:
        assert (
            entry["example"] in examples[entry["label"]] and entry["looks_like"] != entry["label"]
        )
    assert taught["open_set"]["threshold"] == DEFAULT_THRESHOLD
    assert taught["open_set"]["temperature"] > 0
    summary = client.get(f"/api/recognisers/{recogniser}").json()
    assert summary["quality"] == quality and summary["threshold"] == DEFAULT_THRESHOLD
    [listed] = client.get("/api/recognisers").json()
    assert listed["quality"] == quality and listed["threshold"] == DEFAULT_THRESHOLD


def test_before_teaching_there_is_no_threshold_or_quality(client):
    recogniser = _recogniser(client, {"red": 2})
    summary = client.get(f"/api/recognisers/{recogniser}").json()
    assert summary["threshold"] is None and summary["quality"] is None


# Predicting


def test_predict_answers_a_label_or_none_of_these(client):
    recogniser = _recogniser(client, {"red": 3, "green": 3, "blue": 3})
    client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
    answer = _predict(client, recogniser, photo(COLOURS["green"], 5))
    assert set(answer) == {"label", "none_of_these", "score", "threshold", "probabilities"}
    probabilities = [p["probability"] for p in answer["probabilities"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 3
    assert sum(probabilities) == pytest.approx(1, abs=1e-6)
    assert 0 <= answer["score"] <= 1 and answer["threshold"] == DEFAULT_THRESHOLD
    assert answer["none_of_these"] == (answer["score"] < answer["threshold"])
    top = answer["probabilities"][0]["label"]
    assert answer["label"] == (None if answer["none_of_these"] else top)

    # The user's threshold decides: just above this image's score rejects it.
    stripes = _predict(client, recogniser, STRIPES)
    assert stripes["score"] < 1
    put = f"/api/recognisers/{recogniser}/threshold"
    client.put(put, json={"threshold": stripes["score"] + 1e-6}).raise_for_status()
    rejected = _predict(client, recogniser, STRIPES)
    assert rejected["none_of_these"] is True and rejected["label"] is None
    assert rejected["probabilities"] == stripes["probabilities"]
    client.put(put, json={"threshold": 0}).raise_for_status()
    accepted = _predict(client, recogniser, STRIPES)
    assert accepted["none_of_these"] is False
    assert accepted["label"] == accepted["probabilities"][0]["label"]


# The user's threshold


def test_the_users_threshold_is_kept_across_restarts_and_null_goes_back(personaliser, tmp_path):
    store = Store(tmp_path)
    with _client(personaliser, store) as client:
        recogniser = _recogniser(client, {"red": 2, "green": 2})
        client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
        put = f"/api/recognisers/{recogniser}/threshold"
        assert client.put(put, json={"threshold": 0.4}).json() == {"threshold": 0.4}
        summary = client.get(f"/api/recognisers/{recogniser}").json()
        assert summary["threshold"] == 0.4 and summary["taught"] is not None
    store.close()
    store = Store(tmp_path)
    with _client(personaliser, store) as client:
        assert client.get(f"/api/recognisers/{recogniser}").json()["threshold"] == 0.4
        assert _predict(client, recogniser, photo(COLOURS["red"], 4))["threshold"] == 0.4
        assert client.put(put, json={"threshold": None}).json() == {"threshold": DEFAULT_THRESHOLD}
        assert client.get("/api/recognisers").json()[0]["threshold"] == DEFAULT_THRESHOLD
    store.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"threshold": 1.5}, "from 0 to 1, got 1.5"),
        ({"threshold": -0.1}, "from 0 to 1, got -0.1"),
        ({"threshold": "high"}, "must be a number from 0 to 1 or null, got 'high'"),
        ({"threshold": True}, "must be a number from 0 to 1 or null, got True"),
        ({"level": 0.5}, 'send a JSON object like {"threshold": "..."}'),
    ],
)
def test_bad_thresholds_are_refused(client, body, message):
    recogniser = _recogniser(client, {"red": 2, "green": 2})
    response = client.put(f"/api/recognisers/{recogniser}/threshold", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_a_threshold_for_a_missing_recogniser_is_not_found(client):
    response = client.put("/api/recognisers/nope/threshold", json={"threshold": 0.5})
    assert response.status_code == 404


# Export


def test_exports_carry_the_calibration_and_threshold_of_the_server(client, personaliser):
    recogniser = _recogniser(client, {"red": 3, "green": 3, "blue": 3}, name="猫と犬 🐶")
    client.post(f"/api/recognisers/{recogniser}/teach").raise_for_status()
    images = [photo(COLOURS["red"], 6), photo(COLOURS["blue"], 7), STRIPES]
    export = f"/api/recognisers/{recogniser}/export"
    stripes_score = _predict(client, recogniser, STRIPES)["score"]
    put = f"/api/recognisers/{recogniser}/threshold"
    client.put(put, json={"threshold": stripes_score + 1e-6}).raise_for_status()
    answers = [_predict(client, recogniser, image) for image in images]
    assert answers[2]["none_of_these"] is True
    batch = np.stack(
        [decode_image(image, personaliser.image_size, "q").numpy() for image in images]
    )
    models = {}
    for format, suffix in (("onnx", ".onnx"), ("onnx-int8", "-int8.onnx")):
        response = client.get(export, params={"format": format})
        assert response.status_code == 200, response.text
        disposition = response.headers["content-disposition"]
        fallback = disposition.split('filename="')[1].split('"')[0]
        assert fallback == f"recogniser-{'猫と犬 🐶'.encode().hex()[:32]}{suffix}"
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == f"猫と犬 🐶{suffix}"
        models[format] = response.content
    assert len(models["onnx-int8"]) < len(models["onnx"]) / 3
    for format, model in models.items():
        metadata = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
        assert json.loads(metadata["labels"]) == ["red", "green", "blue"]
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        probabilities, rejected, scores = session.run(
            ["probabilities", "none_of_these", "score"], {"image": batch}
        )
        assert rejected.dtype == bool and rejected.shape == (3,)
        if format == "onnx":  # the float model answers as the server
            for answer, row, rejects, score in zip(
                answers, probabilities, rejected, scores, strict=True
            ):
                served = {p["label"]: p["probability"] for p in answer["probabilities"]}
                assert row.tolist() == pytest.approx(
                    [served[label] for label in ["red", "green", "blue"]], abs=1e-4
                )
                assert bool(rejects) == answer["none_of_these"]
                assert float(score) == pytest.approx(answer["score"], abs=1e-4)
    refused = client.get(export, params={"format": "tflite"})
    assert refused.status_code == 400 and "format=onnx-int8" in refused.json()["error"]


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("Colours", "Colours"),
        ("Café au lait", "Cafe-au-lait"),
        ("Ångström - Été!", "Angstrom-Ete"),
        ("猫と犬 🐶", "recogniser-" + "猫と犬 🐶".encode().hex()[:32]),
        ("---", "recogniser-2d2d2d"),
        ("my_cats (2)", "my_cats-2"),
    ],
)
def test_download_names_keep_the_name_with_an_ascii_fallback(name, fallback):
    assert ascii_file_name(name) == fallback
    header = content_disposition(name, ".onnx")
    assert header.startswith(f"attachment; filename=\"{fallback}.onnx\"; filename*=UTF-8''")
    assert unquote(header.split("''", 1)[1]) == f"{name}.onnx"
    assert header.isascii()


def test_with_one_example_per_class_nothing_is_left_out_or_rejected(client):
    recogniser = _recogniser(client, {"red": 1, "green": 1})
    taught = client.post(f"/api/recognisers/{recogniser}/teach").json()
    assert [c["accuracy"] for c in taught["quality"]["per_class"]] == [None, None]
    assert (
        taught["quality"]["confusion"] == [[0, 0], [0, 0]] and taught["quality"]["confused"] == []
    )
    assert taught["open_set"]["temperature"] == 1.0  # nothing to fit it on
    answer = _predict(client, recogniser, STRIPES)
    assert answer["score"] == 1.0 and answer["none_of_these"] is False
