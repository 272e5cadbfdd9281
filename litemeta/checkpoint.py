"""Checkpoints: atomic, checksummed writes, safe loads, model fingerprints, and the one format
for saved models.

Checkpoints hold only tensors, dicts, lists, tuples, numbers, strings and None, so they load
with ``torch.load(..., weights_only=True)``, which never runs code from the file. The payload
is serialised once, its SHA-256 computed, and both stored in the file; loading recomputes the
digest, so a flipped bit anywhere in the payload is an error, never silently changed weights.

A saved model is its weights (``model``), its description (``model_config``: its class and
the settings it was built with) and that description's fingerprint. A training checkpoint
(``last.pt``, ``best.pt``) adds the training state (:class:`TrainingState`); a learner file
(``save_learner``) is the same format without it. This module is the only one that knows the
keys: :func:`save_model` writes both kinds, :func:`read_model` and
:func:`read_training_checkpoint` read them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "CheckpointError",
    "ModelMismatchError",
    "SavedModel",
    "TrainingState",
    "check_finite_weights",
    "check_model_config",
    "describe_model",
    "find_checkpoint",
    "first_non_finite",
    "load_checkpoint",
    "load_model_weights",
    "model_fingerprint",
    "read_model",
    "read_training_checkpoint",
    "remove_stale_temporaries",
    "save_atomically",
    "save_model",
    "write_files_atomically",
]


#: Marks a checksummed checkpoint; the value is the format version.
FORMAT_KEY = "litemeta_checkpoint"
FORMAT_VERSION = 1
TEMPORARY_SUFFIX = ".tmp"

#: The checkpoints of a training run's output directory: the latest step, and the step with
#: the best validation accuracy.
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"

#: The keys of a saved model, in a training checkpoint and in a learner file.
_MODEL_KEYS = ("model", "model_config", "model_fingerprint")
#: The keys of a learner file written before learners were saved in the checkpoint format.
_EARLIER_LEARNER_KEYS = ("config", "state_dict")


class ModelMismatchError(RuntimeError):
    """A checkpoint written for a model configured differently from the one loading it."""


class CheckpointError(RuntimeError):
    """A file that is not a usable checkpoint: unreadable, corrupt, or something else."""


def _serialise(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as ``torch.save`` bytes in a uint8 tensor, with their SHA-256."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    data = buffer.getvalue()
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }


def save_atomically(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``payload`` with its checksum so that ``path`` is either the old or the new file.

    The bytes go to a temporary file in the same directory, are flushed to disk (fsync), and
    the file is renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows). A failure
    part-way leaves the previous checkpoint untouched and removes the temporary file; one
    left by a killed process is removed by :func:`remove_stale_temporaries`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sealed = _serialise(payload)
    # A fresh name opened exclusively: created with the usual permissions (mkstemp's are 0600).
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}"
    try:
        with temporary.open("xb") as stream:
            torch.save(sealed, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch reports a full disk as a RuntimeError
        temporary.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        raise CheckpointError(
            f"cannot write checkpoint {path} ({len(sealed['payload']) / 2**20:.0f} MB; "
            f"{free / 2**20:.0f} MB free on its disk): {' '.join(str(error).split())}; the "
            "previous checkpoint is untouched"
        ) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def write_files_atomically(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write output files all or nothing: each ``writer(partial)`` fills ``PATH.partial``,
    and only when all are written are they renamed over their paths. A failure (a full disk,
    a shell's file size limit) removes every partial file and raises :class:`OSError`
    naming the file that could not be written."""
    partials = {path: path.with_name(path.name + ".partial") for path in writers}
    try:
        for path, write in writers.items():
            try:
                write(partials[path])
            except OSError as error:
                free = shutil.disk_usage(path.parent).free
                reason = error.strerror or " ".join(str(error).split())
                raise OSError(
                    f"cannot write {path}: {reason} ({free / 2**20:.0f} MB free on its disk; "
                    "a shell's `ulimit -f` limits file sizes too): free space or write "
                    "elsewhere; nothing was written"
                ) from error
        for path, partial in partials.items():
            os.replace(partial, path)
    finally:
        for partial in partials.values():
            partial.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that never finished (a killed
    process leaves ``.NAME.XXXX.tmp``); returns what was removed."""
    removed = []
    for path in Path(directory).glob(f".*.pt.*{TEMPORARY_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _torch_load(source: Any, path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a file it cannot read
        # torch's own message may advise weights_only=False, which would run code from an
        # untrusted file: only the error type is passed on.
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__} while loading): the "
            "file is corrupt, truncated, or not written by litemeta. Use another checkpoint "
            "(best.pt or last.pt of the run) or retrain"
        ) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing code from it (``weights_only=True``) and verify its
    checksum; :class:`CheckpointError` names the file when it is not a valid checkpoint."""
    return _load(Path(path), map_location, earlier_learner_format=False)


def _load(
    path: Path, map_location: str | torch.device, *, earlier_learner_format: bool
) -> dict[str, Any]:
    """:func:`load_checkpoint`; with ``earlier_learner_format`` a learner file written before
    learners were saved in the checkpoint format (``{"config", "state_dict"}``, no checksum)
    is read too, as a saved model."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    sealed = _torch_load(path, path, map_location="cpu")
    if isinstance(sealed, dict) and sealed.get(FORMAT_KEY) == FORMAT_VERSION:
        data = sealed.get("payload")
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
            raise CheckpointError(f"{path} is a damaged checkpoint: its payload is missing")
        raw = data.numpy().tobytes()
        if hashlib.sha256(raw).hexdigest() != sealed.get("sha256"):
            raise CheckpointError(
                f"{path} fails its checksum: the file was changed or damaged after it was "
                "written. Use another checkpoint (best.pt or last.pt of the run) or retrain"
            )
        payload = _torch_load(io.BytesIO(raw), path, map_location)
    elif isinstance(sealed, dict) and "model_fingerprint" in sealed:
        warnings.warn(
            f"{path} has no checksum (written by an earlier litemeta); it cannot be verified",
            stacklevel=3,
        )
        payload = _torch_load(path, path, map_location)
    elif (
        earlier_learner_format
        and isinstance(sealed, dict)
        and all(key in sealed for key in _EARLIER_LEARNER_KEYS)
    ):
        warnings.warn(
            f"{path} is a learner file in an earlier format, without a checksum: it cannot be "
            "verified; save the learner again with save_learner to convert it",
            stacklevel=4,
        )
        earlier = _torch_load(path, path, map_location)
        config = earlier["config"]
        payload = {
            "model": earlier["state_dict"],
            "model_config": config,
            "model_fingerprint": model_fingerprint(config),
        }
    else:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a litemeta checkpoint; pass a file written by "
            "`litemeta train` (best.pt or last.pt) or its output directory"
        )
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds no checkpoint mapping; it is not a litemeta file")
    return payload


def load_model_weights(
    model: torch.nn.Module,
    path: str | Path,
    model_config: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
    withdrawn: Collection[str] = (),
) -> dict[str, Any]:
    """Load a saved model's weights (a training checkpoint or a learner file) into ``model``
    after checking it was written for the same model configuration (``withdrawn``: see
    :func:`check_model_config`); returns the checkpoint (step, config, ... for a training
    checkpoint)."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    _require_model(checkpoint, path)
    check_model_config(checkpoint, describe_model(model, model_config or {}), path, withdrawn)
    model.load_state_dict(checkpoint["model"])
    return checkpoint


def _require_model(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    missing = sorted(set(_MODEL_KEYS) - set(checkpoint))
    if missing:
        raise CheckpointError(
            f"{path} holds no model weights (missing {missing}); pass a checkpoint written by "
            "`litemeta train`"
        )
    check_finite_weights(checkpoint["model"], path)


def check_finite_weights(weights: Any, path: str | Path) -> None:
    """Refuse model weights that are not a mapping of tensors, or that hold NaN or
    infinity (the parameters of a run that diverged), naming the file. Every reader of a
    saved model (evaluate, personalise, export, serve, resume) passes through here."""
    if not isinstance(weights, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in weights.values()
    ):
        raise CheckpointError(
            f"{path} holds no model weights (its 'model' entry is a {type(weights).__name__}, "
            "not tensors by name): the file was not written by litemeta; use best.pt or "
            "last.pt of a run"
        )
    broken = first_non_finite(weights)
    if broken is not None:
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN or infinity in {broken}): the run that "
            "wrote it diverged; use a checkpoint written before it diverged, or train again "
            "with a lower learning rate (training.optim.lr) or clipped gradients "
            "(training.optim.grad_clip)"
        )


def first_non_finite(tensors: Mapping[str, Any], prefix: str = "") -> str | None:
    """The name of the first floating-point tensor in ``tensors`` (nested mappings and
    lists walked) that holds NaN or infinity, or ``None`` when all are finite."""
    for name, value in tensors.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            found = first_non_finite(value, f"{key}.")
        elif isinstance(value, list | tuple):
            found = first_non_finite(dict(enumerate(value)), f"{key}.")
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            found = None if bool(torch.isfinite(value).all()) else key
        else:
            found = None
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class TrainingState:
    """What a training checkpoint holds besides the model, to resume exactly: the last step,
    the optimiser's and loss scaler's states, every process's random states (as
    :func:`litemeta.training.random_state.rng_state` gives them), the number of processes,
    the training settings and the best validation accuracy so far."""

    step: int
    optimizer: dict[str, Any]
    grad_scaler: dict[str, Any]
    rng: list[dict[str, Any]]
    world_size: int
    config: dict[str, Any]
    best_validation_accuracy: float | None


_TRAINING_KEYS = tuple(field.name for field in fields(TrainingState))


@dataclass(frozen=True)
class SavedModel:
    """A model read from a file: its description (``model_config`` as written: the model's
    class and the settings it was built with) and its weights."""

    config: dict[str, Any]
    weights: dict[str, Any]


def save_model(
    path: str | Path,
    model: torch.nn.Module,
    model_config: Mapping[str, Any],
    training: TrainingState | None = None,
) -> Path:
    """Write ``model``'s weights and description (:func:`describe_model` of ``model_config``)
    atomically with a checksum; with ``training`` the file is a training checkpoint, without
    it a learner file."""
    described = describe_model(model, model_config)
    payload: dict[str, Any] = {
        "model": model.state_dict(),
        "model_config": described,
        "model_fingerprint": model_fingerprint(described),
    }
    if training is not None:
        payload |= {name: getattr(training, name) for name in _TRAINING_KEYS}
    return save_atomically(payload, path)


def read_model(path: str | Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """Read a training checkpoint or a learner file (also one in the earlier
    ``{"config", "state_dict"}`` format, with a warning) without executing code from it;
    :class:`CheckpointError` names the file when it holds no model."""
    checkpoint = _load(Path(path), map_location, earlier_learner_format=True)
    _require_model(checkpoint, path)
    return SavedModel(checkpoint["model_config"], checkpoint["model"])


def read_training_checkpoint(
    path: str | Path,
    model_config: Mapping[str, Any],
    map_location: str | torch.device = "cpu",
    withdrawn: Collection[str] = (),
) -> tuple[dict[str, Any], TrainingState]:
    """The model weights and the training state of a training checkpoint, to resume from,
    after checking that it was written for a model described by ``model_config``
    (:func:`describe_model`; ``withdrawn``: see :func:`check_model_config`)."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    _require_model(checkpoint, path)
    check_model_config(checkpoint, model_config, path, withdrawn)
    missing = [name for name in _TRAINING_KEYS if name not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path} holds a model but no training state (missing {missing}), so a run cannot "
            f"resume from it; resume from the run's {LAST_CHECKPOINT}"
        )
    return checkpoint["model"], TrainingState(**{name: checkpoint[name] for name in _TRAINING_KEYS})


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the best (else last) one of a training output directory."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
            _refuse_broken_link(path / name)
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no {BEST_CHECKPOINT} or {LAST_CHECKPOINT} in {path}")
    _refuse_broken_link(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def _refuse_broken_link(path: Path) -> None:
    """A symbolic link that leads to no file (a loop, or a target that is gone) is named as
    such, not taken for a missing file."""
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(
            f"{path} is a symbolic link that leads to no file (a loop of links, or its target "
            f"is gone): point it at a checkpoint or remove it"
        )


def describe_model(model: torch.nn.Module, model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The model's identity: its class and the settings it was built with, as plain JSON data."""
    described = {"class": f"{type(model).__module__}.{type(model).__qualname__}", **model_config}
    return json.loads(json.dumps(described, sort_keys=True, default=str))


def model_fingerprint(model_config: Mapping[str, Any]) -> str:
    """SHA-256 of the model configuration's canonical JSON."""
    canonical = json.dumps(model_config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_model_config(
    checkpoint: Mapping[str, Any],
    model_config: Mapping[str, Any],
    path: str | Path,
    withdrawn: Collection[str] = (),
) -> None:
    """Refuse a checkpoint whose model configuration differs, naming the keys that differ;
    ``withdrawn`` (dotted keys) are settings that earlier descriptions of the model hold but
    that no longer describe it (the model says which), passed over where only the
    checkpoint has them."""
    if checkpoint["model_fingerprint"] == model_fingerprint(model_config):
        return
    saved, current = _flatten(checkpoint["model_config"]), _flatten(model_config)
    passed_over = set(withdrawn) - current.keys()
    differences = [
        f"{key}: {saved.get(key, '<absent>')!r} in the checkpoint, "
        f"{current.get(key, '<absent>')!r} now"
        for key in sorted((saved.keys() | current.keys()) - passed_over)
        if saved.get(key, "<absent>") != current.get(key, "<absent>")
    ]
    if not differences:
        return
    raise ModelMismatchError(
        f"checkpoint {path} was written for a different model configuration ("
        + "; ".join(differences)
        + "). Use the model settings it was trained with, or start a new run in another "
        "output directory."
    )
