"""Settings as dataclass trees: built from YAML with type checks, changed by ``a.b=value``
overrides, and every mistake a :class:`ConfigError` that says what to change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from litemeta.config import (
    RUNTIME,
    SECTIONS,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_from_yaml,
    config_to_dict,
    load_yaml,
)


@dataclass
class Inner:
    rate: float = 0.5
    names: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class Settings:
    steps: int = 10
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    verbose: bool = False
    inner: Inner = field(default_factory=Inner)


def test_nested_mappings_become_dataclasses_with_numbers_coerced_to_float():
    data = {"steps": 3, "inner": {"rate": 2, "names": ["a", "b"], "weights": {"x": "1e-3"}}}
    config = config_from_dict(Settings, data)
    assert config == Settings(steps=3, inner=Inner(rate=2.0, names=["a", "b"], weights={"x": 1e-3}))
    assert type(config.inner.rate) is float and type(config.inner.weights["x"]) is float
    assert config_from_dict(Settings, {"limit": None}).limit is None
    assert config_from_dict(Settings, {"limit": 7}).limit == 7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"step": 3}, r"unknown key 'step' in the config; did you mean 'steps'\?"),
        ({"inner": {"rat": 1}}, r"unknown key 'rat' in section 'inner'; did you mean 'rate'"),
        ({"steps": 2.5}, "steps must be of type int, got 2.5"),
        ({"steps": True}, "steps must be of type int, got True"),
        ({"verbose": "yes"}, "verbose must be of type bool"),
        ({"mode": "medium"}, r"mode must be one of \['fast', 'slow'\], got 'medium'"),
        ({"limit": "many"}, "limit must be of type int, got 'many'"),
        ({"inner": {"rate": True}}, "inner.rate must be a number, got True"),
        ({"inner": {"rate": "fast"}}, "inner.rate must be a number, got 'fast'"),
        ({"inner": {"names": "a"}}, "inner.names must be a list, got 'a'"),
        ({"inner": {"names": ["a", 2]}}, r"inner.names\[1\] must be of type str"),
        ({"inner": {"weights": ["x"]}}, "inner.weights must be a mapping"),
        ({"inner": 3}, "inner must be a mapping, got 3"),
    ],
)
def test_every_ill_typed_value_names_its_key(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(Settings, data)


def test_yaml_is_plain_data_and_its_mistakes_give_the_line():
    assert load_yaml("a: 1\nb: [x, 2.5]\n", "s.yaml") == {"a": 1, "b": ["x", 2.5]}
    with pytest.raises(ConfigError, match=r"s\.yaml: line 3: duplicate key 'a'"):
        load_yaml("a: 1\nb: 2\na: 3\n", "s.yaml")
    with pytest.raises(ConfigError, match=r"s\.yaml: line 1: .*plain values only"):
        load_yaml("a: !!python/name:os.system\n", "s.yaml")
    with pytest.raises(ConfigError, match=r"s\.yaml: line 2, column \d+: invalid YAML"):
        load_yaml("a: [1,\nb: }\n", "s.yaml")


def test_a_settings_file_is_read_into_the_dataclass(tmp_path: Path):
    path = tmp_path / "settings.yaml"
    path.write_text("steps: 4\ninner:\n  names: [q]\n")
    assert config_from_yaml(Settings, path) == Settings(steps=4, inner=Inner(names=["q"]))
    path.write_text("")
    assert config_from_yaml(Settings, path) == Settings()
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings at the top level"):
        config_from_yaml(Settings, path)
    with pytest.raises(ConfigError, match=r"config file .*missing\.yaml does not exist"):
        config_from_yaml(Settings, tmp_path / "missing.yaml")


def test_a_key_of_another_section_is_suggested_with_its_full_path():
    with pytest.raises(
        ConfigError, match=r"unknown key 'rate' in the config; did you mean inner\.rate\?"
    ):
        config_from_dict(Settings, {"rate": 1})


@dataclass
class Nested:
    tables: dict[str, dict[str, float]] = field(default_factory=dict)


def test_an_override_adds_a_section_to_a_mapping_valued_setting():
    changed = apply_overrides(Nested(tables={"a": {"x": 1.0}}), ["tables.b.y=2", "tables.a.z=3"])
    assert changed == Nested(tables={"a": {"x": 1.0, "z": 3.0}, "b": {"y": 2.0}})
    with pytest.raises(ConfigError, match=r"tables\.a\.x is not a section"):
        apply_overrides(changed, ["tables.a.x.deeper=1"])


def test_overrides_set_dotted_keys_with_yaml_values_and_leave_the_original():
    base = Settings()
    changed = apply_overrides(
        base,
        [
            "steps=5",
            "inner.rate=1e-2",
            "inner.names=[a, b]",
            "inner.weights.head=0.1",
            "limit=null",
        ],
    )
    assert changed == Settings(
        steps=5, inner=Inner(rate=0.01, names=["a", "b"], weights={"head": 0.1})
    )
    assert base == Settings()
    assert apply_overrides(changed, ["inner.weights={}"]).inner.weights == {}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps", "override 'steps' is not of the form key=value"),
        ("=3", "override '=3' is not of the form key=value"),
        ("inner.rat=3", r"unknown key 'rat' in section 'inner'; did you mean 'rate'"),
        ("rate=3", r"unknown key 'rate' in the config; did you mean inner\.rate\?"),
        ("weights.x=3", r"unknown key 'weights' .*did you mean inner\.weights\.x\?"),
        ("steps.x=1", "steps is not a section"),
        ("steps=[1", r"override 'steps=\[1': .*invalid YAML"),
        ("mode=medium", "mode must be one of"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Settings(), [override])


@dataclass
class WithState:
    seed: int = 0
    pairs: list[list[int]] = field(default_factory=list)
    generator: object = field(default=None, metadata=RUNTIME)


def test_run_time_state_is_neither_written_nor_read():
    config = WithState(seed=3, pairs=[[1, 2]], generator=object())
    assert config_to_dict(config) == {"seed": 3, "pairs": [[1, 2]]}
    assert config_to_dict(Settings(inner=Inner(names=["a"]))) == {
        "steps": 10,
        "mode": "fast",
        "limit": None,
        "verbose": False,
        "inner": {"rate": 0.5, "names": ["a"], "weights": {}},
    }
    with pytest.raises(
        ConfigError, match=r"unknown key 'generator' in the config \(known: seed, pairs\)"
    ):
        config_from_dict(WithState, {"generator": 1})
    assert apply_overrides(config, ["seed=4"]) == WithState(seed=4, pairs=[[1, 2]])


@dataclass
class Colour:
    name: str = "red"


@dataclass
class Size:
    pixels: int = 16


@dataclass
class Sectioned:
    """Sections named beside the settings, as the dataset kinds' sections under ``data:``."""

    root: str = "."
    sections: dict = field(default_factory=dict, metadata=SECTIONS)

    @classmethod
    def section_types(cls) -> dict[str, type]:
        return {"colour": Colour, "size": Size}

    def __post_init__(self) -> None:
        for key, settings in self.section_types().items():
            self.sections.setdefault(key, settings())


def test_sections_sit_beside_the_settings_and_are_checked_like_them():
    config = config_from_dict(Sectioned, {"root": "x", "colour": {"name": "blue"}})
    assert config.sections == {"colour": Colour("blue"), "size": Size(16)}
    assert config_to_dict(config) == {
        "root": "x",
        "colour": {"name": "blue"},
        "size": {"pixels": 16},
    }
    changed = apply_overrides(config, ["size.pixels=32"])
    assert changed.sections["size"] == Size(32) and changed.sections["colour"] == Colour("blue")
    with pytest.raises(ConfigError, match=r"size\.pixels must be of type int, got 'big'"):
        apply_overrides(config, ["size.pixels=big"])
    with pytest.raises(ConfigError, match=r"unknown key 'shade' in section 'colour'"):
        config_from_dict(Sectioned, {"colour": {"shade": "dark"}})
    with pytest.raises(ConfigError, match=r"unknown key 'sections'.*known: root, colour, size"):
        config_from_dict(Sectioned, {"sections": {}})
