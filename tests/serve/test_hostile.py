"""Hostile cases for the web app: a store shared with the user's files and other processes,
requests from other sites, and command lines that used to fail without a clear message.

Each case is listed by category in docs/reliability.md ("Hostile cases: the web app").
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from litemeta.cli import main
from litemeta.serve import app as app_module
from litemeta.serve.app import create_app
from litemeta.serve.recogniser import MEDIA_TYPES, Personaliser
from litemeta.serve.records import StoreError, StoreInUse
from litemeta.serve.store import IMAGE_EXTENSIONS, Store
from tests.serve.conftest import COLOURS, photo
from tests.serve.helpers import ROOT, running

PNG = (photo(COLOURS["red"]), ".png", "image/png")


@pytest.fixture
def quick_dir() -> Iterator[Path]:
    """A folder in memory where the machine has one (/dev/shm), so that thousands of fsyncs
    take seconds; the cases that use it are about deletions, not about durability."""
    shared_memory = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shared_memory if shared_memory.is_dir() else None))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _user_files(images: Path) -> dict[str, bytes]:
    """Files a user keeps in the store's images folder: photos in a folder, a note."""
    (images / "holiday").mkdir(parents=True)
    files = {f"holiday/{i}.png": photo(COLOURS["blue"], i) for i in range(4)}
    files["notes.txt"] = b"x\n"
    for name, data in files.items():
        (images / name).write_bytes(data)
    return files


def _fake_serving(monkeypatch) -> list[uvicorn.Config]:
    """`litemeta serve` without a checkpoint to load or a server loop: records the configs
    it would have served."""
    served: list[uvicorn.Config] = []
    learner = SimpleNamespace(name="protonets")
    description = SimpleNamespace(model="a model", hint=None)
    monkeypatch.setattr(
        Personaliser,
        "from_checkpoint",
        lambda *a: SimpleNamespace(learner=learner, description=description),
    )
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(self))
    return served


# The store owns only what it wrote


def test_serve_leaves_the_users_files_in_the_images_folder(tmp_path, monkeypatch):
    _fake_serving(monkeypatch)
    files = _user_files(tmp_path / "images")
    (tmp_path / "images" / "holiday" / "4.png").write_bytes(b"more")
    argv = ["serve", "--checkpoint", str(tmp_path), "--port", "0", "--store", str(tmp_path)]
    with pytest.warns(UserWarning) as warned:
        assert main(argv) == 0
    for name, data in files.items():
        assert (tmp_path / "images" / name).read_bytes() == data
    [message] = [str(w.message) for w in warned]
    assert "holds 6 file(s) litemeta did not write, left untouched: holiday/0.png" in message
    assert "holiday/4.png and 1 more; move them out" in message  # five named, sorted


def test_the_sweep_removes_only_the_stores_own_files_without_a_row(tmp_path):
    store = Store(tmp_path)
    recogniser = store.create("r")
    store.add_examples(recogniser, "red", [PNG])
    [kept] = store.get(recogniser).classes["red"]
    folder = tmp_path / "images" / recogniser
    orphan_id = "0123456789abcdef" * 2
    orphans = [folder / f"{orphan_id}.jpg", folder / f".{orphan_id}.png.tmp"]
    mine = [folder / "my-copy.png", folder / f"{orphan_id}.jpeg", tmp_path / "images" / "a.png"]
    for path in orphans + mine:
        path.write_bytes(b"data")
    gone = tmp_path / "images" / ("f" * 32)  # a deleted recogniser's folder, its file orphaned
    gone.mkdir()
    (gone / f"{orphan_id}.gif").write_bytes(b"data")
    store.close()
    with pytest.warns(UserWarning, match="holds 3 file"):
        reopened = Store(tmp_path)
    assert not any(p.exists() for p in orphans) and not gone.exists()
    assert all(p.read_bytes() == b"data" for p in mine) and kept.path.is_file()
    assert reopened.counts(recogniser) == {"red": 1}


def test_deleting_a_recogniser_keeps_files_it_did_not_write_in_its_folder(tmp_path):
    store = Store(tmp_path)
    recogniser = store.create("r")
    store.add_examples(recogniser, "red", [PNG, PNG])
    note = tmp_path / "images" / recogniser / "keep me.txt"
    note.write_text("mine")
    store.delete(recogniser)
    assert note.read_text() == "mine"
    assert [p.name for p in note.parent.iterdir()] == ["keep me.txt"]
    store.delete(store.create("empty"))  # a recogniser without a folder


def test_the_pattern_matches_every_file_name_the_store_writes(tmp_path):
    assert {extension for extension, _ in MEDIA_TYPES.values()} <= set(IMAGE_EXTENSIONS)
    store = Store(tmp_path)
    recogniser = store.create("r")
    with pytest.raises(ValueError, match=r"extension \.tiff"):
        store.add_examples(recogniser, "red", [(b"II*", ".tiff", "image/tiff")])
    for extension in IMAGE_EXTENSIONS:
        store.add_examples(recogniser, "red", [(b"data", extension, "image/x")])
    store.close()
    with warnings.catch_warnings():  # no warning: every file is the store's own
        warnings.simplefilter("error")
        Store(tmp_path).close()
    assert len([p for p in (tmp_path / "images").rglob("*") if p.is_file()]) == 5


# One process at a time

OPENER = """
import sys, time
from pathlib import Path
from litemeta.serve.records import StoreInUse
from litemeta.serve.store import Store
tries = refused = 0
while not Path(sys.argv[2]).exists() or tries == 0:
    tries += 1
    try:
        Store(sys.argv[1]).close()
    except StoreInUse as error:
        refused += 1
        message = str(error)
    if tries == 1:
        print("opening", flush=True)
    time.sleep(0.01)
print(tries, refused, flush=True)
print(message, flush=True)
"""


def test_no_acknowledged_upload_is_lost_while_another_process_opens_the_store(quick_dir):
    store = Store(quick_dir, holder="the uploading test")
    recogniser = store.create("busy")
    stop = quick_dir / "stop"
    opener = subprocess.Popen(
        [sys.executable, "-c", OPENER, str(quick_dir), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert opener.stdout.readline() == "opening\n"
    acknowledged = {"red": 0, "green": 0}

    def upload(label: str) -> None:
        while acknowledged[label] < 1500:
            counts = store.add_examples(recogniser, label, [PNG] * 20)
            acknowledged[label] += 20
            assert counts[label] == acknowledged[label]

    threads = [threading.Thread(target=upload, args=(label,)) for label in acknowledged]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.touch()
    tries, refused = map(int, opener.stdout.readline().split())
    message = opener.stdout.readline()
    opener.wait(timeout=30)
    examples = store.get(recogniser).classes
    assert {label: len(e) for label, e in examples.items()} == acknowledged  # 3,000
    lost = [e for e in examples["red"] + examples["green"] if not e.path.is_file()]
    assert len(lost) == 0
    assert all(e.path.read_bytes() == PNG[0] for e in examples["red"] + examples["green"])
    assert tries > 10 and refused == tries  # it kept trying during the uploads
    assert "is in use by the uploading test (process" in message


def test_a_second_store_in_the_same_process_is_refused_until_the_first_closes(tmp_path):
    first = Store(tmp_path, holder="litemeta serve http://127.0.0.1:8000/")
    with pytest.raises(StoreInUse, match=r"in use by litemeta serve http://127\.0\.0\.1:8000/"):
        Store(tmp_path)
    first.close()
    Store(tmp_path).close()


def test_a_second_serve_is_refused_and_sweeps_nothing(tmp_path, monkeypatch, capsys):
    _fake_serving(monkeypatch)
    holder = Store(tmp_path, holder="litemeta serve http://127.0.0.1:8001/")
    recogniser = holder.create("r")
    # a file being written, as the first server's sweep would see it
    in_flight = tmp_path / "images" / recogniser / f".{'a' * 32}.png.tmp"
    in_flight.parent.mkdir()
    in_flight.write_bytes(b"half")
    argv = ["serve", "--checkpoint", str(tmp_path), "--port", "0", "--store", str(tmp_path)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"litemeta: error: the store {tmp_path} is in use by litemeta serve http://" in err
    assert "stop that server first, or give another store folder (--store)" in err
    with socket.socket() as taken:  # and one that cannot bind its port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        argv[4] = str(taken.getsockname()[1])
        assert main(argv) == 1
    assert in_flight.read_bytes() == b"half"
    holder.close()


# Requests from other sites (a token-less server on 127.0.0.1)


@pytest.fixture
def api(tmp_path) -> Iterator[TestClient]:
    """The app without a token; no checkpoint needed to create recognisers and upload (the
    image size bounds the stored images)."""
    store = Store(tmp_path)
    app = create_app(SimpleNamespace(image_size=32), store)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    store.close()


OWN = {"Origin": "http://testserver"}


def _upload(client: TestClient, recogniser: str, headers: dict[str, str]) -> httpx.Response:
    return client.post(
        f"/api/recognisers/{recogniser}/examples",
        data={"label": "red"},
        files=[("file", ("red.png", PNG[0], "image/png"))],
        headers=headers,
    )


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", '{"name": "csrf"}'),
        ("text/plain; charset=utf-8", '{"name": "csrf"}'),
        ("application/x-www-form-urlencoded", '{"name": "csrf"}'),
        (None, '{"name": "csrf"}'),
    ],
    ids=["text", "text-charset", "form", "no-type"],
)
def test_json_sent_as_anything_a_page_may_send_is_refused(api, content_type, body):
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = api.post("/api/recognisers", content=body, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"].startswith("send JSON with Content-Type: application/json")
    assert api.get("/api/recognisers").json() == []


def test_uploads_need_the_servers_own_origin(api):
    recogniser = api.post("/api/recognisers", json={"name": "r"}).json()["id"]
    missing = _upload(api, recogniser, {})
    assert missing.status_code == 403
    assert "send the header Origin: http://testserver" in missing.json()["error"]
    for origin in ("http://attacker.example", "null", "http://testserver:8080"):
        foreign = _upload(api, recogniser, {"Origin": origin})
        assert foreign.status_code == 403
        assert f"requests from another site ({origin}) are refused" in foreign.json()["error"]
    assert api.get(f"/api/recognisers/{recogniser}").json()["classes"] == []
    assert _upload(api, recogniser, OWN).json() == {"red": 1}


def test_other_origins_are_refused_whatever_they_send(api):
    recogniser = api.post("/api/recognisers", json={"name": "r"}).json()["id"]
    evil = {"Origin": "http://attacker.example"}
    assert api.post("/api/recognisers", json={"name": "x"}, headers=evil).status_code == 403
    assert api.delete(f"/api/recognisers/{recogniser}", headers=evil).status_code == 403
    assert api.post(f"/api/recognisers/{recogniser}/teach", headers=evil).status_code == 403
    assert [r["name"] for r in api.get("/api/recognisers").json()] == ["r"]
    # the page's own requests, and clients that send no Origin, go through
    assert api.post(f"/api/recognisers/{recogniser}/classes", json={"label": "a"}).is_success
    assert api.delete(f"/api/recognisers/{recogniser}/classes/a", headers=OWN).is_success
    assert api.delete(f"/api/recognisers/{recogniser}").is_success


def test_a_rebound_host_name_gets_no_data(tmp_path):
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1."""
    store = Store(tmp_path)
    store.create("private")
    with running(create_app(SimpleNamespace(), store)) as url:
        port = url.rsplit(":", 1)[1]
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1:1"):
            response = httpx.get(f"{url}/api/recognisers", headers={"Host": host})
            assert response.status_code == 403 and "private" not in response.text
            assert (
                f"not to host {host!r}; open http://127.0.0.1:{port}/" in response.json()["error"]
            )
        assert httpx.get(url, headers={"Host": "attacker.example"}).status_code == 403
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            response = httpx.get(f"{url}/api/recognisers", headers={"Host": host})
            assert response.status_code == 200 and response.json()[0]["name"] == "private"
    store.close()


def test_with_a_token_any_host_name_may_reach_the_server(tmp_path):
    store = Store(tmp_path)
    app = create_app(SimpleNamespace(), store, token="s3cret")
    with TestClient(app, base_url="http://my-machine.lan:8000") as client:
        bearer = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/recognisers", headers=bearer).json() == []
        assert client.post("/api/recognisers", json={"name": "x"}).status_code == 401
    store.close()


# Messages from the command line


def test_a_corrupt_database_is_named_with_what_to_do(tmp_path, monkeypatch, capsys):
    _fake_serving(monkeypatch)
    database = tmp_path / "store.sqlite3"
    database.write_bytes(b"these are not the bytes of a database" * 100)
    argv = ["serve", "--checkpoint", str(tmp_path), "--port", "0", "--store", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        f"litemeta: error: cannot open the store's database {database}: file is not a "
        "database; restore it from a backup, or move it aside (e.g. to "
        "store.sqlite3.damaged) to start an empty store there\n"
    )
    with pytest.raises(StoreError):  # and the lock was let go: it fails the same way again
        Store(tmp_path)


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_a_port_out_of_range_is_refused(tmp_path, capsys, port):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--checkpoint", str(tmp_path), "--port", port])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port: " in err
    assert "must be from 0 (any free port) to 65535" in err or "expected a port number" in err


def test_a_port_in_use_is_one_line_and_exit_1_before_serving(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--checkpoint", str(tmp_path / "no-run"), "--port", str(port)]
        assert main([*argv, "--store", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"litemeta: error: port {port} on 127.0.0.1 is in use (another server?); stop it or "
        "pick another port with --port\n"
    )
    assert not (tmp_path / "store.sqlite3").exists()


def test_port_0_serves_on_a_free_port_and_says_which(tmp_path, monkeypatch, capsys):
    served = _fake_serving(monkeypatch)
    argv = ["serve", "--checkpoint", str(tmp_path), "--port", "0", "--store", str(tmp_path)]
    assert main(argv) == 0 and len(served) == 1
    out = capsys.readouterr().out
    assert out.startswith("litemeta: serving http://127.0.0.1:") and ":0/" not in out


@pytest.fixture
def token_given(monkeypatch) -> dict[str, object]:
    given: dict[str, object] = {}
    monkeypatch.setattr(app_module, "run_server", lambda *a, **options: given.update(options))
    monkeypatch.delenv("LITEMETA_TOKEN", raising=False)
    return given


def test_the_token_can_come_from_the_environment_or_a_file(tmp_path, monkeypatch, token_given):
    argv = ["serve", "--checkpoint", str(tmp_path), "--host", "0.0.0.0"]
    assert main(argv) == 0 and token_given["token"] is None
    monkeypatch.setenv("LITEMETA_TOKEN", "from-env")
    assert main(argv) == 0 and token_given["token"] == "from-env"
    secret = tmp_path / "token"
    secret.write_text("from-file\nsecond line\n")
    assert main([*argv, "--token-file", str(secret)]) == 0 and token_given["token"] == "from-file"
    assert main([*argv, "--token", "typed"]) == 0 and token_given["token"] == "typed"


def test_a_bad_token_file_is_one_line(tmp_path, capsys, token_given):
    argv = ["serve", "--checkpoint", str(tmp_path), "--token-file"]
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert main([*argv, str(empty)]) == 1
    assert f"--token-file {empty} is empty; write the token on its first line" in (
        capsys.readouterr().err
    )
    assert main([*argv, str(tmp_path / "missing")]) == 1
    assert "cannot read it" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*argv, str(empty), "--token", "t"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
