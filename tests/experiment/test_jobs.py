"""The experiment config, the train / evaluate / personalise jobs and their commands,
end to end on the built-in emoji set with a small backbone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from litemeta.cli import main
from litemeta.config import ConfigError
from litemeta.data import load_emoji
from litemeta.experiment import load_experiment
from litemeta.experiment.jobs import BASELINE, META_TRAINED, personalise, train_experiment
from tests.cli_helpers import TINY_OVERRIDES

# The shared tiny settings, with support and query from different artists and 2 steps.
TINY = [
    *TINY_OVERRIDES,
    "data.support_styles=[google, twitter]",
    "data.query_styles=[openmoji]",
    "training.steps=2",
    "training.log_every=1",
    "evaluation.tasks=3",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("run")
    config = load_experiment("default", [*TINY, f"training.output_dir={output}"])
    results = train_experiment(config)
    assert list(results) == [BASELINE, META_TRAINED]
    assert all(r.accuracy.n == 3 for r in results.values())
    return output


def test_shipped_configs_load_with_overrides() -> None:
    for name in ("default", "orbit", "meta-dataset", "vtab"):
        assert load_experiment(name).model.learner in {"protonets", "simple_cnaps"}
    config = load_experiment("default", ["training.lite.h=7", "data.query_styles=[google]"])
    assert config.training.lite.h == 7 and config.data.query_styles == ["google"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.lerner=cnaps", "did you mean 'learner'"),
        ("training.steps=many", "steps must be of type int"),
        ("data.dataset=imagenet", "data.dataset must be one of"),
        ("data.query_styles=google", "must be a list"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment("default", [override])


def test_unknown_config_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"choose one of .*default"):
        load_experiment("defualt")


def test_train_writes_checkpoints_logs_and_a_report(trained_run: Path) -> None:
    for name in ("last.pt", "best.pt", "train.csv", "experiment.yaml", "test/results.md"):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "test" / "results.json").read_text())
    assert set(report) == {BASELINE, META_TRAINED}


def test_evaluate_command_prints_the_table(trained_run: Path, tmp_path: Path, capsys) -> None:
    overrides = [*TINY, f"training.output_dir={trained_run}"]
    code = main(["evaluate", "--checkpoint", str(trained_run), "--tasks", "2", *overrides])
    assert code == 0
    assert "meta-trained with LITE (best.pt) | 2 |" in capsys.readouterr().out


def test_evaluate_refuses_a_checkpoint_of_another_model(trained_run: Path, capsys) -> None:
    overrides = [*TINY, "model.image_size=40"]
    assert main(["evaluate", "--checkpoint", str(trained_run), *overrides]) == 1
    assert "image_size" in capsys.readouterr().err


def _write_emoji(folder: Path, class_id: int, style: str) -> Path:
    collection = load_emoji("test")
    item = collection.item_styles(class_id).index(style)
    image = collection.load_image(class_id, item, 64).permute(1, 2, 0).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{collection.class_names[class_id]}-{style}.png"
    Image.fromarray(image).save(path)
    return path


def test_personalise_labels_every_query_image(trained_run: Path, tmp_path: Path) -> None:
    support, query = tmp_path / "support", tmp_path / "query"
    for class_id, name in ((0, "seedling"), (40, "other")):
        for style in ("google", "twitter"):
            _write_emoji(support / name, class_id, style)
        _write_emoji(query, class_id, "openmoji")
    predictions = personalise(trained_run, support, query, output_dir=tmp_path / "out")
    assert [Path(p.path).parent for p in predictions] == [query, query]
    assert {p.label for p in predictions} <= {"seedling", "other"}
    assert all(0.5 <= p.probability <= 1 for p in predictions)
    with (tmp_path / "out" / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == 2


def test_personalise_reports_a_missing_query_folder(trained_run: Path, tmp_path: Path, capsys):
    _write_emoji(tmp_path / "support" / "a", 0, "google")
    _write_emoji(tmp_path / "support" / "b", 40, "google")
    code = main(
        [
            "personalise",
            "--checkpoint",
            str(trained_run),
            "--support",
            str(tmp_path / "support"),
            "--query",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 1
    assert "query folder" in capsys.readouterr().err


def test_train_refuses_to_overwrite_a_run(trained_run: Path, capsys) -> None:
    assert main(["train", *TINY, f"training.output_dir={trained_run}"]) == 1
    assert "--resume" in capsys.readouterr().err
