"""Settings as trees of dataclasses: built from YAML mappings with type checks, and
changed with ``dotted.key=value`` overrides from the command line."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = [
    "RUNTIME",
    "SECTIONS",
    "ConfigError",
    "apply_overrides",
    "check_number",
    "coerce_value",
    "config_from_dict",
    "config_from_yaml",
    "config_to_dict",
    "load_yaml",
    "setting_differences",
]

#: What :func:`setting_differences` gives for a setting that one side does not have.
ABSENT = "<absent>"

#: Field metadata of a dataclass field that holds run-time state (a mode chosen per split, a
#: value resolved from the settings), not a setting: it is neither read from nor written to
#: a settings file.
RUNTIME = {"runtime": True}

#: Field metadata of a mapping field whose entries are sections named beside the dataclass's
#: own settings (``data.orbit`` next to ``data.root``), each a dataclass that the class's
#: ``section_types()`` names (the sections of the registered dataset kinds, for example).
SECTIONS = {"sections": True}

Config = TypeVar("Config")


class ConfigError(ValueError):
    """A configuration key or value that cannot be used, with what to do about it."""


#: The largest whole number a setting may hold: a 64-bit signed integer, what torch,
#: NumPy and the samplers take.
MAX_INTEGER = 2**63 - 1


def check_number(
    key: str,
    value: float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` is a finite number within
    the bounds (``minimum`` and ``maximum`` included, ``above`` excluded). NaN passes every
    comparison test as false, so finiteness is checked first, not left to the bounds."""
    bounds = [
        f">= {minimum}" if minimum is not None else "",
        f"> {above}" if above is not None else "",
        f"<= {maximum}" if maximum is not None else "",
    ]
    wanted = " and ".join(bound for bound in bounds if bound)
    whole = isinstance(value, int)
    finite = whole or math.isfinite(value)
    if (
        not finite
        or (minimum is not None and value < minimum)
        or (above is not None and value <= above)
        or (maximum is not None and value > maximum)
    ):
        raise ConfigError(
            f"{key} must be {'a whole' if whole else 'a finite'} number"
            f"{' ' + wanted if wanted else ''}, got {value}"
        )


def config_from_dict(cls: type[Config], data: Mapping[str, Any]) -> Config:
    """Build dataclass ``cls`` from nested mappings; unknown keys and ill-typed values raise
    :class:`ConfigError`."""
    return _build(cls, data, prefix="", root=cls)


def _settings(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are settings (not :data:`RUNTIME` state)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("runtime")]


def _schema(cls: type) -> dict[str, Any]:
    """The type of each setting of dataclass ``cls`` by name: its fields' and, in place of a
    :data:`SECTIONS` field, the sections that ``cls.section_types()`` names."""
    hints = typing.get_type_hints(cls)
    schema: dict[str, Any] = {}
    for f in _settings(cls):
        if f.metadata.get("sections"):
            schema |= cls.section_types()  # type: ignore[attr-defined]
        else:
            schema[f.name] = hints[f.name]
    return schema


def config_to_dict(config: Any) -> Any:
    """Dataclass ``config`` as nested plain data (its settings only, see :data:`RUNTIME`;
    the entries of a :data:`SECTIONS` field beside the others); YAML, JSON and
    ``torch.load(weights_only=True)`` safe."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        plain: dict[str, Any] = {}
        for f in _settings(type(config)):
            value = config_to_dict(getattr(config, f.name))
            plain |= value if f.metadata.get("sections") else {f.name: value}
        return plain
    if isinstance(config, dict):
        return {key: config_to_dict(value) for key, value in config.items()}
    if isinstance(config, list | tuple):
        return [config_to_dict(value) for value in config]
    return config


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader (plain data, no object tags) that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise ConfigError(
                    f"line {mark.line + 1}: duplicate key {key!r}; keep one of the entries"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML as plain data; syntax errors, object tags (``!!python/...``) and duplicate
    keys raise :class:`ConfigError` naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: plain data only
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(
            f"{source}: {where}{error.problem}; settings files hold plain values only "
            "(numbers, strings, lists, mappings)"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{source}: {where}invalid YAML ({problem})") from None


def config_from_yaml(cls: type[Config], path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = load_yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return config_from_dict(cls, data)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """A copy of dataclass ``config`` with ``dotted.key=value`` overrides (values parsed as
    YAML, then type-checked like the file)."""
    data = config_to_dict(config)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        value = load_yaml(text, f"override {override!r}")
        _set_dotted(data, type(config), key.strip().split("."), value)
    return config_from_dict(type(config), data)


def _set_dotted(data: dict[str, Any], root: type, path: list[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]... = value``; dataclass sections accept only their fields,
    mapping-valued settings (``optim.group_lr``, ``model.learner_options``) any key, and a
    missing entry of one becomes a new section."""
    section: dict[str, Any] = data
    schema: Any = root
    for depth, part in enumerate(path):
        if schema is not None:
            _check_known(path[depth:], section, ".".join(path[:depth]), root)
            hint = _schema(schema)[part]
            schema = hint if dataclasses.is_dataclass(hint) else None
        if depth == len(path) - 1:
            section[part] = value
        else:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{'.'.join(path[: depth + 1])} is not a section")


def _check_known(path: Sequence[str], section: Mapping[str, Any], where: str, root: type) -> None:
    """Refuse a first key of ``path`` that ``section`` lacks, suggesting the full key where
    ``path`` is a setting elsewhere in ``root``'s tree, else a close name."""
    key = path[0]
    if key in section:
        return
    place = f"section '{where}'" if where else "the config"
    elsewhere = _full_keys(root, path)
    close = difflib.get_close_matches(key, list(section), n=1)
    if elsewhere:
        hint = f"; did you mean {' or '.join(elsewhere)}?"
    else:
        hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown key '{key}' in {place}{hint} (known: {', '.join(section)})")


def _setting_paths(
    cls: type, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """The path of every setting in dataclass ``cls``'s tree (sections included), and
    whether it is a mapping that takes any key."""
    for name, hint in _schema(cls).items():
        path = (*prefix, name)
        yield path, typing.get_origin(hint) is dict
        if dataclasses.is_dataclass(hint):
            yield from _setting_paths(hint, path)


def _full_keys(root: type, path: Sequence[str]) -> list[str]:
    """The dotted keys of ``root``'s tree that end with ``path``, or with its start where
    the rest is an entry of a mapping-valued setting."""
    for size in range(len(path), 0, -1):
        head, rest = tuple(path[:size]), list(path[size:])
        found = [
            ".".join([*setting, *rest])
            for setting, mapping in _setting_paths(root)
            if setting[-size:] == head and (mapping or not rest)
        ]
        if found:
            return found
    return []


def _build(cls: type, data: Mapping[str, Any], prefix: str, root: type) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    schema = _schema(cls)
    names = list(schema)
    sections_field = next((f.name for f in _settings(cls) if f.metadata.get("sections")), None)
    fields = {f.name for f in _settings(cls)}
    values: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        _check_known([key], dict.fromkeys(names), prefix.rstrip("."), root)
        coerced = _coerce(value, schema[key], f"{prefix}{key}", root)
        (values if key in fields else sections)[key] = coerced
    if sections_field is not None:
        values[sections_field] = sections
    try:
        return cls(**values)
    except ConfigError as error:  # a section's own check names its keys without the section
        first = str(error).split(" ", 1)[0].split(".", 1)[0]
        if prefix and first in names:
            raise ConfigError(f"{prefix}{error}") from None
        raise


def coerce_value(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (ints and numeric strings converted to
    float); a mismatch raises :class:`ConfigError` naming ``key``."""
    return _coerce(value, hint, key, root=hint)


def _coerce(value: Any, hint: Any, key: str, root: type) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.", root)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key, root)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits no option")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item_type,) = typing.get_args(hint)
        return [_coerce(item, item_type, f"{key}[{n}]", root) for n, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        key_type, value_type = typing.get_args(hint)
        return {
            _coerce(k, key_type, f"{key} key", root): _coerce(v, value_type, f"{key}.{k}", root)
            for k, v in value.items()
        }
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        check_number(key, number)  # no setting means anything by nan or inf
        return number
    if hint in (bool, int, str) and (type(value) is not hint):
        raise ConfigError(f"{key} must be of type {hint.__name__}, got {value!r}")
    if hint is int and abs(value) > MAX_INTEGER:
        raise ConfigError(f"{key}={value} is too large: at most {MAX_INTEGER} (2**63 - 1)")
    return value


def setting_differences(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (before, after)}`` for the settings that differ, nested mappings
    walked; a setting that one side lacks is :data:`ABSENT` there."""
    found: dict[str, tuple[Any, Any]] = {}
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, ABSENT), after.get(key, ABSENT)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found |= setting_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found[f"{prefix}{key}"] = (old, new)
    return found
