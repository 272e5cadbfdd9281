import csv
import random

import numpy as np
import pytest
import torch
from train_helpers import SyntheticTasks, TinyProtoNet, Untrainable

from litemeta.checkpoint import (
    ModelMismatchError,
    load_checkpoint,
    load_model_weights,
    save_atomically,
)
from litemeta.config import ConfigError
from litemeta.lite import LiteSettings
from litemeta.training import (
    Trainer,
    TrainingConfig,
    TrainingDiverged,
    backward_task,
    build_optimizer,
    restore_rng_state,
    rng_state,
    seeded_generator,
    train,
)


def _config(tmp_path, name="run", **overrides) -> TrainingConfig:
    settings = {
        "steps": 6,
        "tasks_per_step": 2,
        "query_batch_size": 4,
        "checkpoint_every": 2,
        "validate_every": 3,
        "log_every": 1,
        "seed": 7,
        "output_dir": str(tmp_path / name),
        "lite": {"h": 5},
        "optim": {"lr": 1e-2},
    }
    return TrainingConfig.from_dict(settings).apply_overrides(
        [f"{key}={value}" for key, value in overrides.items()]
    )


def _learner(seed: int = 0) -> TinyProtoNet:
    torch.manual_seed(seed)
    return TinyProtoNet()


def _validation_tasks() -> list:
    stream = SyntheticTasks(seed=99)
    return [stream(i) for i in range(2)]


def _gradient(learner, task, query_batch_size):
    learner.zero_grad()
    outcome = backward_task(
        learner,
        task,
        lite=LiteSettings(h=5),
        generator=torch.Generator().manual_seed(3),
        query_batch_size=query_batch_size,
        tasks_per_step=2,
    )
    return outcome, [p.grad.clone() for p in learner.parameters()]


def test_query_batches_give_the_gradient_of_one_big_batch():
    learner, task = _learner(), SyntheticTasks()(0)  # 15 queries
    whole, whole_grads = _gradient(learner, task, query_batch_size=100)
    batched, batched_grads = _gradient(learner, task, query_batch_size=4)  # 4+4+4+3
    assert batched.loss == pytest.approx(whole.loss)
    assert (batched.correct, batched.queries, batched.images) == (whole.correct, 15, 27)
    for a, b in zip(whole_grads, batched_grads, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_loss_includes_the_regulariser_once():
    learner, task = _learner(), SyntheticTasks()(0)
    with torch.no_grad():
        classifier = learner.adapt(task.support_images, task.support_labels)
        expected = (
            torch.nn.functional.cross_entropy(classifier(task.query_images), task.query_labels)
            + classifier.regularizer
        )
    outcome, _ = _gradient(learner, task, query_batch_size=4)
    assert outcome.loss == pytest.approx(float(expected), rel=1e-5)


def test_refuses_a_learner_without_meta_training(tmp_path):
    with pytest.raises(ValueError, match="meta_trainable is False"):
        Trainer(_config(tmp_path), Untrainable(), SyntheticTasks())


def _train_csv_without_timing(path):
    with (path / "train.csv").open() as stream:
        return [(row["step"], row["loss"], row["accuracy"]) for row in csv.DictReader(stream)]


class _Killed(RuntimeError):
    pass


def _kill_at(step):
    def callback(metrics):
        if metrics.step == step:
            raise _Killed(f"killed during step {step}")

    return callback


def test_resume_after_a_kill_reaches_the_uninterrupted_result(tmp_path):
    validation = _validation_tasks()
    full = train(
        _config(tmp_path, "full"), _learner(), SyntheticTasks(), validation, progress=False
    )

    config = _config(tmp_path, "killed")
    with pytest.raises(_Killed):
        train(config, _learner(), SyntheticTasks(), validation, on_step_end=_kill_at(5))
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["step"] == 4
    assert len(_train_csv_without_timing(tmp_path / "killed")) == 5  # step 5 logged, not saved

    # a fresh learner (other initial weights) and a fresh loop object continue the run
    resumed = Trainer(
        config, _learner(seed=1), SyntheticTasks(), validation, resume=True, progress=False
    )
    result = resumed.run()
    assert [m.step for m in result.history] == [5, 6]

    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "full" / name)
        b = load_checkpoint(tmp_path / "killed" / name)
        assert a["step"] == b["step"]
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), key
        for key, value in a["optimizer"]["state"].items():
            assert torch.equal(value["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])
    assert result.best_validation_accuracy == full.best_validation_accuracy
    assert [m.loss for m in full.history[4:]] == [m.loss for m in result.history]
    assert _train_csv_without_timing(tmp_path / "full") == _train_csv_without_timing(
        tmp_path / "killed"
    )


def test_training_writes_logs_checkpoints_and_learns(tmp_path):
    config = _config(tmp_path, steps=30, checkpoint_every=10, validate_every=10)
    validation = _validation_tasks()
    learner = _learner()
    result = train(config, learner, SyntheticTasks(), validation, progress=False)
    run = tmp_path / "run"
    assert (run / "config.yaml").exists()
    assert TrainingConfig.from_yaml(run / "config.yaml") == config
    assert any((run / "tensorboard").iterdir())
    with (run / "validation.csv").open() as stream:
        assert [row["step"] for row in csv.DictReader(stream)] == ["10", "20", "30"]
    assert len(_train_csv_without_timing(run)) == 30
    best = load_checkpoint(result.best_checkpoint)
    assert best["best_validation_accuracy"] == result.best_validation_accuracy
    assert load_checkpoint(result.last_checkpoint)["step"] == 30
    assert result.history[-1].loss < result.history[0].loss
    assert all(m.tasks_per_second > 0 and m.images_per_second > 0 for m in result.history)


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    config = _config(tmp_path, steps=1)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(config, _learner(), SyntheticTasks(), resume=True, progress=False)
    train(config, _learner(), SyntheticTasks(), progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(config, _learner(), SyntheticTasks(), progress=False)


def test_a_task_stream_too_short_for_the_run_is_refused_before_training(tmp_path):
    config = _config(tmp_path, steps=3)  # 3 steps of 2 tasks
    stream = SyntheticTasks()
    with pytest.raises(ValueError, match=r"holds 5 tasks, but 3 steps of 2 tasks .* take 6"):
        train(config, _learner(), [stream(i) for i in range(5)], progress=False)
    assert not (tmp_path / "run").exists()
    train(config, _learner(), [stream(i) for i in range(6)], progress=False)


def test_a_diverged_step_stops_training_with_what_to_do(tmp_path):
    """A parameter turned NaN after step 2 (as a too-large learning rate does): step 3's
    loss is NaN; training stops there, keeping step 2's checkpoint, and says so, rather
    than validating NaN models or blaming LITE's row check."""
    learner = _learner()

    def diverge(metrics) -> None:
        if metrics.step == 2:
            with torch.no_grad():
                next(learner.parameters()).fill_(float("nan"))

    config = _config(tmp_path, steps=4, checkpoint_every=1)
    with pytest.raises(
        TrainingDiverged,
        match=r"step 3: a task's loss is nan; training "
        r"diverged: lower the learning rate",
    ):
        train(config, learner, SyntheticTasks(), on_step_end=diverge, progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


def test_refuses_a_checkpoint_from_another_model_config(tmp_path):
    config = _config(tmp_path, steps=1)
    built_with = {"backbone": "tiny", "image_size": 6, "width": 8}
    train(config, _learner(), SyntheticTasks(), model_config=built_with, progress=False)
    other = {"backbone": "tiny", "image_size": 84, "width": 8}
    with pytest.raises(ModelMismatchError, match=r"image_size: 6 in the checkpoint, 84 now"):
        train(config, _learner(), SyntheticTasks(), model_config=other, resume=True)
    with pytest.raises(ModelMismatchError, match="class") as error:
        train(config, Subclass(), SyntheticTasks(), model_config=built_with, resume=True)
    assert "image_size" not in str(error.value)

    trained, fresh = load_checkpoint(tmp_path / "run" / "last.pt"), _learner(seed=5)
    assert load_model_weights(fresh, tmp_path / "run" / "last.pt", built_with)["step"] == 1
    assert all(torch.equal(v, trained["model"][k]) for k, v in fresh.state_dict().items())
    with pytest.raises(ModelMismatchError, match="image_size"):
        load_model_weights(fresh, tmp_path / "run" / "last.pt", other)


class Subclass(TinyProtoNet):
    pass


def test_failed_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomically({"step": 1, "weights": torch.ones(3)}, path)

    def crash_mid_write(obj, stream):
        stream.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_atomically({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    kept = load_checkpoint(path)
    assert kept["step"] == 1 and torch.equal(kept["weights"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    device = torch.device("cpu")
    random.gauss(0, 1)  # a cached Gaussian is part of Python's state
    save_atomically({"rng": rng_state(device)}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], device)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_group_learning_rates_and_unknown_group_names():
    class Named(TinyProtoNet):
        def parameter_groups(self, base_lr):
            return [
                {"name": "backbone", "params": list(self.network[1].parameters()), "lr": base_lr},
                {"name": "head", "params": list(self.network[3].parameters()), "lr": base_lr},
            ]

    config = TrainingConfig().apply_overrides(["optim.lr=0.1", "optim.group_lr={backbone: 0.01}"])
    optimizer = build_optimizer(Named(), config.optim)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]
    bad = config.apply_overrides(["optim.group_lr={bakbone: 0.01}"])
    with pytest.raises(ConfigError, match=r"\['bakbone'\].*backbone, head"):
        build_optimizer(Named(), bad.optim)


def test_config_overrides_are_type_checked():
    config = TrainingConfig().apply_overrides(["lite.h=null", "optim.lr=1e-3", "steps=5"])
    assert (config.lite.h, config.optim.lr, config.steps) == (None, 1e-3, 5)
    assert TrainingConfig.from_dict(config.to_dict()) == config
    rates = config.apply_overrides(["optim.group_lr.backbone=1e-5", "optim.group_lr.head=0.1"])
    assert rates.optim.group_lr == {"backbone": 1e-5, "head": 0.1}
    for override, message in [
        ("lite.hh=3", "unknown key 'hh' in section 'lite'; did you mean 'h'"),
        ("stepz=3", "did you mean 'steps'"),
        ("steps=many", "steps must be of type int"),
        ("steps=0", "steps must be at least 1"),
        ("precision=fp8", "precision must be one of"),
        ("lite.stratified=3", "lite.stratified must be of type bool"),
        ("optim.lr.x=1", "optim.lr is not a section"),
        ("steps", "key=value"),
        ("optim.group_lr.head=fast", "optim.group_lr.head must be a number"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            TrainingConfig().apply_overrides([override])


def test_seeded_generators_are_reproducible_and_independent():
    first = torch.rand(2, generator=seeded_generator(5, "lite", 1))
    assert torch.equal(first, torch.rand(2, generator=seeded_generator(5, "lite", 1)))
    assert not torch.equal(first, torch.rand(2, generator=seeded_generator(5, "lite", 2)))


def test_bf16_autocast_on_cpu_trains(tmp_path):
    config = _config(tmp_path, steps=2, precision="bf16", validate_every=0)
    result = train(config, _learner(), SyntheticTasks(), progress=False)
    assert all(np.isfinite(m.loss) for m in result.history)
    with pytest.raises(ValueError, match=r"fp16.*CUDA"):
        train(_config(tmp_path, "fp16", precision="fp16"), _learner(), SyntheticTasks())


def test_loader_workers_do_not_change_training(tmp_path):
    """Tasks are index-addressed: 0 or 2 loader processes give the same run, bit for bit."""
    runs = {}
    for workers in (0, 2):
        config = _config(tmp_path, f"workers{workers}", steps=4, validate_every=2)
        learner = _learner()
        result = train(
            config,
            learner,
            SyntheticTasks(),
            _validation_tasks(),
            progress=False,
            workers=workers,
        )
        runs[workers] = (result, learner.state_dict())
    (serial, serial_weights), (parallel, parallel_weights) = runs[0], runs[2]
    assert [m.loss for m in serial.history] == [m.loss for m in parallel.history]
    assert serial.best_validation_accuracy == parallel.best_validation_accuracy
    for key, value in serial_weights.items():
        assert torch.equal(value, parallel_weights[key]), key
