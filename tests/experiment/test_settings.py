"""The experiment settings: shipped configs, overrides, and what a bad override says."""

from __future__ import annotations

import pytest

from litemeta.config import ConfigError
from litemeta.experiment import load_experiment


def test_shipped_configs_load_with_overrides() -> None:
    shipped = ("default", "orbit", "meta-dataset", "vtab", "paper-vtab", "paper-md", "paper-orbit")
    for name in shipped:
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
        ("model.image_size=0", r"model\.image_size must be at least 1 \(pixels\), got 0"),
        ("model.image_size=-8", r"model\.image_size must be at least 1 \(pixels\), got -8"),
        ("model.learner=protonet", r"model\.learner: unknown learner 'protonet'; choose one of"),
        ("model.options.distance_scale=abc", r"model\.options\.distance_scale must be a number"),
        ("model.options.meta_train=all", r"model\.options\.meta_train must be one of"),
        (
            "model.learner_options.simple_cnaps.film_regularisation=0.1",
            r"no option 'film_regularisation' \(its options: .*film_regularization.*\); "
            r"fix or remove it in model\.learner_options\.simple_cnaps",
        ),
        ("model.learner_options.cnap.chunk_size=8", r"unknown learners \['cnap'\]"),
        ("data.sampler.query=0", r"data\.sampler\.query must be at least 1, got 0"),
        ("data.sampler.way=0", r"data\.sampler\.way must be at least 1, got 0"),
        ("data.sampler.shot=-1", r"data\.sampler\.shot must be at least 1, got -1"),
        ("data.validation_tasks=-1", r"data\.validation_tasks must be >= 0 \(0: no validation\)"),
        ("evaluation.seed=-1", r"evaluation\.seed must be >= 0, got -1"),
        ("training.seed=-1", r"^training\.seed must be a whole number >= 0 and <= \d+, got -1"),
        ("data.vtab.support_size=-5", r"data\.vtab\.support_size must be at least 1, got -5"),
        ("data.vtab.query_limit=0", r"data\.vtab\.query_limit must be null .* at least 1"),
        ("data.vtab.support=first", r"data\.vtab\.support must be one of \['vtab-1k', "),
        ("data.vtab.support_size=800", r"data\.vtab\.support_size 800 does not apply to"),
        ("training.lite.h=0", r"^training\.lite\.h must be null, auto or at least 1"),
        ("training.optim.group_lr.backbone=-1", r"^training\.optim\.group_lr\.backbone must be"),
        ("optim.lr=1", r"unknown key 'optim' in the config; did you mean training\.optim\.lr\?"),
        (
            "model.lite.h=3",
            r"unknown key 'lite' in section 'model'; did you mean training\.lite\.h",
        ),
    ],
)
def test_bad_overrides_say_what_is_wrong(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment("default", [override])


def test_unknown_config_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"choose one of .*default"):
        load_experiment("defualt")


def test_a_folder_given_as_the_config_says_so_and_points_at_a_runs_settings(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder: give a YAML file$"):
        load_experiment(str(tmp_path))
    (tmp_path / "experiment.yaml").write_text("training: {steps: 3}\n")
    with pytest.raises(ConfigError, match=r"a run's settings are in .*experiment\.yaml"):
        load_experiment(str(tmp_path))


def test_a_shipped_config_wins_over_a_data_folder_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "orbit").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_experiment("orbit").data.dataset == "orbit"


def test_film_placement_is_a_model_setting() -> None:
    from litemeta.experiment import build_model

    base = ["model.backbone=resnet18", "model.pretrained=false", "model.image_size=32"]
    base.append("model.learner=simple_cnaps")
    everywhere = build_model(load_experiment("default", [*base, "model.film_placement=all"]).model)
    published = build_model(load_experiment("default", base).model)
    assert everywhere.backbone.film_placement == "all"
    assert len(everywhere.backbone.film_layers) == 20  # every batch norm of ResNet-18
    assert published.backbone.film_placement == "published"
    assert len(published.backbone.film_layers) == 16  # after bn1 and bn2 of 8 basic blocks
    with pytest.raises(ConfigError, match=r"model\.film_placement must be one of"):
        load_experiment("default", ["model.film_placement=some"])


def test_a_moved_setting_says_where_it_is_now(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("training:\n  lite: {h: 8, chunk_size: 32}\n")
    with pytest.raises(ConfigError, match=r"training.lite.chunk_size is now model.chunk_size"):
        load_experiment(path)
    with pytest.raises(ConfigError, match=r"training.lite.chunk_size is now model.chunk_size"):
        load_experiment("default", ["training.lite.chunk_size=32"])
    with pytest.raises(ConfigError, match=r"model.options.chunk_size is now model.chunk_size"):
        load_experiment("default", ["model.options.chunk_size=32"])
    with pytest.raises(ConfigError, match=r"model.chunk_size must be at least 1 image, got 0"):
        load_experiment("default", ["model.chunk_size=0"])
    with pytest.raises(ConfigError, match=r"data.orbit_max_way is now data.orbit.max_way"):
        load_experiment("orbit", ["data.orbit_max_way=5"])
    assert load_experiment("orbit", ["data.orbit.max_way=5"]).data.orbit.max_way == 5


def test_the_old_flat_vtab_keys_are_read_as_the_vtab_section(tmp_path) -> None:
    """Runs saved before the data.vtab section hold data.vtab_support_size and
    data.vtab_query_limit: they still load, under the new keys, with a warning."""
    path = tmp_path / "experiment.yaml"
    path.write_text("data:\n  dataset: vtab\n  vtab_support_size: 1000\n  vtab_query_limit: 9\n")
    with pytest.warns(UserWarning, match=r"data.vtab_query_limit is now data.vtab.query_limit"):
        config = load_experiment(path)
    assert (config.data.vtab.support_size, config.data.vtab.query_limit) == (1000, 9)
    overrides = ["data.vtab.support=random", "data.vtab_support_size=20"]
    with pytest.warns(UserWarning, match=r"data.vtab_support_size is now data.vtab.support_size"):
        config = load_experiment("vtab", overrides)
    assert (config.data.vtab.support, config.data.vtab.support_size) == ("random", 20)


def test_paper_vtab_follows_lites_vtab_evaluation() -> None:
    """LITE's run.py --mode test_vtab: EfficientNet-B0 at 224 px, a context set of 1,000
    (SUN397 filled), support and test images 40 at a time (--batch_size 40), float32."""
    config = load_experiment("paper-vtab")
    assert (config.model.learner, config.model.backbone) == ("simple_cnaps", "tf_efficientnet_b0")
    assert config.model.image_size == 224 and config.model.chunk_size == 40
    assert config.model.learner_options == load_experiment("paper-md").model.learner_options
    assert config.evaluation.query_batch_size == 40 and config.evaluation.tasks == 1
    assert config.data.vtab.support == "lite-first-1000" and config.data.vtab.support_size == 1000
    assert config.data.vtab.query_limit is None and config.training.precision == "fp32"
    assert load_experiment("vtab").data.vtab.support == "vtab-1k"


def test_paper_md_follows_lites_md_v2_run() -> None:
    """LITE's run.py defaults: Adam 1e-3, 10,000 tasks with a step every 16, h = 40, batches
    of 40, 224 px, 8 training sources (ImageNet without its DAG), 7 validation sources of 200
    tasks, 8 test sources of 600 tasks; the objective LITE's code back-propagates."""
    config = load_experiment("paper-md")
    assert (config.model.learner, config.model.backbone) == ("simple_cnaps", "tf_efficientnet_b0")
    assert config.model.image_size == 224 and config.model.chunk_size == 40
    assert config.model.learner_options["simple_cnaps"]["encoder_image_size"] == "backbone"
    training = config.training
    assert training.steps * training.tasks_per_step == 10_000 and training.tasks_per_step == 16
    assert training.optim.lr == 1e-3 and training.query_batch_size == 40
    assert (training.lite.h, training.lite.objective) == (40, "lite_reference")
    assert training.precision == "fp32"
    data = config.data
    assert data.sources == [
        "ilsvrc_2012", "omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "mnist"
    ]  # fmt: skip
    assert data.validation_sources == [
        "omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "mscoco"
    ]  # fmt: skip
    assert data.test_sources == [
        "omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "traffic_sign", "mscoco"
    ]  # fmt: skip
    assert data.sampler.kind == "variable" and not data.sampler.train_dag
    assert data.validation_tasks == 200 and config.evaluation.tasks == 600


def test_paper_orbit_follows_the_lite_papers_orbit_run() -> None:
    """ORBIT at the LITE paper (01b7448 README and utils/args.py): Simple CNAPs + LITE with 8
    samples and batches of 8, Adam 1e-4, 16 tasks a step, 5 test tasks for each of 17 users,
    8-frame clips (the 2021 protocol)."""
    config = load_experiment("paper-orbit")
    assert config.model.learner == "simple_cnaps" and config.model.image_size == 224
    assert config.data.orbit.protocol == "lite-2021"
    training = config.training
    assert (training.lite.h, training.lite.objective) == (8, "orbit_reference")
    assert training.query_batch_size == 8 and training.tasks_per_step == 16
    assert training.optim.lr == 1e-4 and config.evaluation.tasks == 5 * 17


def test_an_override_can_set_options_of_a_learner_the_config_does_not_list() -> None:
    override = "model.learner_options.simple_cnaps.film_regularization=0.01"
    config = load_experiment("default", [override])
    assert config.model.learner_options["simple_cnaps"] == {"film_regularization": 0.01}
    assert config.model.learner_options["protonets"] == {"distance_scale": 0.01}


def test_learner_options_are_type_checked_when_the_config_is_loaded() -> None:
    config = load_experiment("default", ["model.options.distance_scale=1e-3"])  # YAML: a string
    assert config.model.options == {"distance_scale": 0.001}


def test_a_variable_way_sampler_ignores_the_fixed_way_numbers() -> None:
    config = load_experiment("meta-dataset", ["data.sampler.query=0"])
    assert config.data.sampler.kind == "variable"
    assert load_experiment("default", ["data.validation_tasks=0"]).data.validation_tasks == 0


def test_paths_starting_with_a_tilde_are_in_the_home_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    paths = ["training.output_dir=~/run", "data.root=~/data", "model.weights_file=~/w.pt"]
    config = load_experiment("default", paths)
    assert config.training.output_dir == f"{tmp_path}/run"
    assert (config.data.root, config.model.weights_file) == (f"{tmp_path}/data", f"{tmp_path}/w.pt")
