"""Every command in README.md's code blocks runs, as written, through ``litemeta.cli.main``.

The commands are read from the README itself, so a new ``litemeta ...`` line is checked
without editing this file. Only the sizes change: each command gets tiny settings
(a small random backbone, 32 px, one or two steps, two test tasks), in a fresh working
directory that holds what the command reads (a trained run, class folders of photos).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from litemeta.cli import build_parser, main
from tests.cli_helpers import TINY_OVERRIDES, train_tiny_run
from tests.data.fake_npm import write_fake_packages
from tests.serve.helpers import free_port, serving_process

README = Path(__file__).resolve().parents[1] / "README.md"

# Benchmark flags with tiny values, given to a `litemeta bench` command that has them.
TINY_BENCH_FLAGS = {
    "--backbone": ["resnet18"],
    "--no-pretrained": [],
    "--learners": ["protonets"],
    "--sizes": ["32"],
    "--size": ["32"],
    "--support": ["4"],
    "--way": ["2"],
    "--shot": ["2"],
    "--queries": ["1"],
    "--queries-per-class": ["1"],
    "--query-batch-size": ["1"],
    "--chunk-size": ["4"],
    "--modes": ["inference"],
    "--threads": ["1"],
    "--device": ["cpu"],
    "--repeats": ["1"],
    "--h": ["1"],
    "--draws": ["2"],
    "--tasks": ["1"],
}
NOT_LITEMETA = {
    "pip": "installs the package; the tests run in an installed environment",
    "ruff": "the linter, run by .ci/run",
    "python": "the test suite itself",
    "torchrun": "a multi-process launch; tests/training/test_distributed.py covers it",
    "scripts/install-test-browser": "installs Chromium for the browser test, run by .ci/run",
}


def readme_commands() -> list[list[str]]:
    """Shell commands of the README's bash blocks and of ``$ ...`` lines in plain blocks,
    split at ``&&``, comments dropped; ``a|b`` alternatives become one command each."""
    commands: list[list[str]] = []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.M | re.S):
        if language not in ("bash", "sh", ""):
            continue
        for line in body.splitlines():
            if language == "":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words:
                    commands += _alternatives(words)
    return commands


def _alternatives(words: list[str]) -> list[list[str]]:
    for position, word in enumerate(words):
        if "|" in word:
            return [
                command
                for choice in word.split("|")
                for command in _alternatives([*words[:position], choice, *words[position + 1 :]])
            ]
    return [words]


def _subparser(argv: list[str]):
    parser = build_parser()
    for word in argv:
        actions = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


def _flag_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def _write_images(folder: Path, classes: list[str] | None) -> None:
    colours = [(220, 30, 30), (30, 200, 40), (40, 40, 220)]
    for index, colour in enumerate(colours):
        target = folder / classes[index] if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        for shot in range(2):
            shade = tuple(max(0, c - 20 * shot) for c in colour)
            Image.new("RGB", (40, 40), shade).save(target / f"image-{index}-{shot}.png")


def tiny(argv: list[str], tmp_path: Path) -> list[str]:
    """``argv`` with tiny settings, and the files it reads created under the working dir."""
    command = argv[0] if argv else ""
    if command in ("train", "evaluate"):
        extra = [*TINY_OVERRIDES, "training.steps=2"] if "--resume" in argv else TINY_OVERRIDES
        return [*argv, *extra]
    if command in ("personalise", "predict", "export"):
        _write_images(Path(_flag_value(argv, "--support")), ["red", "green", "blue"])
        if "--query" in argv:
            _write_images(Path(_flag_value(argv, "--query")), None)
        return argv
    if command == "serve":
        port = free_port("127.0.0.1")
        return [
            *_without(_without(argv, "--port"), "--store"),
            "--port",
            str(port),
            "--store",
            "store",
        ]
    if argv[:2] == ["data", "build-emoji"]:
        packages = write_fake_packages(tmp_path / "npm")
        return [
            *_without(argv, "--size"),
            "--size",
            "16",
            "--limit",
            "1",
            "--packages",
            str(packages),
        ]
    if command == "bench":
        flags = {option for action in _subparser(argv)._actions for option in action.option_strings}
        tiny_argv = list(argv)
        for flag, values in TINY_BENCH_FLAGS.items():
            if flag in flags:
                tiny_argv = [*_without(tiny_argv, flag), flag, *values]
        return [*_without(tiny_argv, "--out"), "--out", str(tmp_path / "bench-out")]
    return argv


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag`` and the values that follow it."""
    if flag not in argv:
        return list(argv)
    start = argv.index(flag)
    end = start + 1
    while end < len(argv) and not argv[end].startswith("-"):
        end += 1
    return argv[:start] + argv[end:]


@pytest.fixture(scope="module")
def trained_default_run(tmp_path_factory) -> Path:
    """A tiny run at ``runs/default``, as `litemeta train` leaves it, for the commands that
    continue, evaluate or personalise it."""
    return train_tiny_run(tmp_path_factory.mktemp("world") / "runs" / "default")


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_it_documents() -> None:
    firsts = [" ".join(c[:2]) for c in COMMANDS if c[0] == "litemeta"]
    for expected in (
        "litemeta train",
        "litemeta evaluate",
        "litemeta personalise",
        "litemeta serve",
        "litemeta export",
    ):
        assert expected in firsts
    assert ["litemeta", "bench", "speed"] in COMMANDS  # `memory|speed|...` is expanded


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_readme_command_runs(words, tmp_path, monkeypatch, trained_default_run, capsys):
    if words[0] != "litemeta":
        pytest.skip(f"not a litemeta command: {NOT_LITEMETA[words[0]]}")
    monkeypatch.chdir(tmp_path)
    argv = words[1:]
    starts_a_run = argv[:1] == ["train"] and "--resume" not in argv
    if not starts_a_run:
        shutil.copytree(trained_default_run, tmp_path / "runs" / "default")
    if argv[:2] == ["data", "build-emoji"]:
        pytest.importorskip("cairosvg")
    if argv[0] == "serve":
        _serve_briefly(tiny(argv, tmp_path))
        return
    code = main(tiny(argv, tmp_path))
    assert code == 0, capsys.readouterr().err


def _serve_briefly(argv: list[str]) -> None:
    """Start `litemeta serve` as its own process, ask its health, stop it with Ctrl-C."""
    port = int(_flag_value(argv, "--port"))
    with serving_process(argv, port) as server:
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=30)
        assert health.json()["status"] == "ok"
    assert server.returncode == 0
