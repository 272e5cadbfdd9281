"""The package's layers import downward only, and no modules import each other in a cycle
(docs/architecture.md)."""

import ast
import sys
from pathlib import Path

import litemeta

PACKAGE = Path(litemeta.__file__).parent

#: Each layer may import its own modules and the layers before it, never one after it.
LAYERS = [
    {"lite", "tasks", "config", "precision", "checkpoint", "device"},
    {"data", "backbones"},
    {"learners"},
    {"evaluation"},
    {"training"},
    {"experiment"},
    {"bench", "serve"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``litemeta`` module ``path`` imports at run time, at any depth of the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for statement in block.body
        for inner in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # annotations only: not imported at run time
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("litemeta")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("litemeta"):
                # ``from package import module`` depends on the module, not only the package.
                modules = {f"{name}.{alias.name}" for alias in node.names}
                modules = {m for m in modules if _is_module(m)}
                found |= modules or {name}
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and the docs")


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_import_runs_downward():
    wrong = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in _graph().items()
        if module != "litemeta"
        for target in targets
        if target != "litemeta" and _layer(target) > _layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_web_app_imports_no_experiment_code():
    """``serve`` reads support folders and adapts checkpoints through ``data`` and
    ``evaluation``, never through the command line's jobs."""
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module.startswith("litemeta.serve")
        for target in targets
        if target.startswith("litemeta.experiment")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    known = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]  # ``from pkg.module import name``
        return target or None

    edges = {m: {t for t in map(resolve, ts) if t and t != m} for m, ts in graph.items()}
    # A package's __init__ re-exports its modules: that edge is not a dependency cycle.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_import_reader_sees_what_it_must(tmp_path, monkeypatch):
    """Absolute, relative and nested imports count; annotation-only ones do not (so the
    tests above can fail)."""
    package = tmp_path / "litemeta"
    (package / "learners").mkdir(parents=True)
    (package / "training").mkdir()
    sample = package / "learners" / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "from litemeta.backbones import Backbone\n"
        "from .registry import LEARNERS\n"
        "from .. import training\n"
        "if TYPE_CHECKING:\n"
        "    from litemeta.experiment import jobs\n"
        "def late():\n"
        "    import litemeta.serve.app\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert _imports(sample) == {
        "litemeta.backbones",
        "litemeta.learners.registry",
        "litemeta.training",
        "litemeta.serve.app",
    }
    assert _layer("litemeta.training.trainer") > _layer("litemeta.learners.base")


#: The size rule of docs/architecture.md ("Sizes"), docstrings and comments included.
MODULE_LINES, FUNCTION_LINES = 500, 80


def _oversized(root: Path) -> dict[str, int]:
    """Each module (``path``) and function (``path::name``) under ``root`` over the size
    rule, with its length in lines."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES:
            found[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > FUNCTION_LINES:
                    found[f"{name}::{node.name}"] = length
    return found


def test_no_module_or_function_is_too_long_to_read_in_one_sitting():
    assert _oversized(PACKAGE) == {}


def test_the_size_rule_counts_modules_and_nested_functions(tmp_path):
    package = tmp_path / "litemeta"
    package.mkdir()
    (package / "long.py").write_text("x = 1\n" * 501)
    (package / "short.py").write_text("x = 1\n" * 500)
    body = "".join(f"        y = {i}\n" for i in range(80))
    (package / "nested.py").write_text(f"class A:\n    def method(self):\n{body}")
    assert _oversized(package) == {"litemeta/long.py": 501, "litemeta/nested.py::method": 81}
