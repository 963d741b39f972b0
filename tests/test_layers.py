"""Imports point one way: a module imports only from its own layer or the layers below
(docs/ARCHITECTURE.md), and train and evaluate never import each other. Imports inside
functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "visionbench"

# Bottom first; the longest matching prefix decides a module's layer.
LAYERS = [
    ("visionbench.version", "visionbench.errors", "visionbench.fileio",
     "visionbench.registry", "visionbench.display", "visionbench.pictures",
     "visionbench.rasters", "visionbench.readers", "visionbench.csvcells"),
    ("visionbench.schemas",),
    ("visionbench.rundir",),
    ("visionbench.data",),
    ("visionbench.models",),
    ("visionbench.runtime",),
    ("visionbench.train", "visionbench.evaluate"),
    ("visionbench.report", "visionbench.predict", "visionbench.track",
     "visionbench.registries"),
    ("visionbench.config", "visionbench.provenance", "visionbench.orchestrate"),
    # The package itself is the public API (`visionbench.load`): it may reach everything.
    ("visionbench", "visionbench.cli", "visionbench.__main__", "visionbench.app"),
]
SIBLINGS_APART = {("visionbench.train", "visionbench.evaluate"),
                  ("visionbench.evaluate", "visionbench.train")}


def _place(module: str) -> tuple[int, str]:
    best = (-1, "")
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(
                    best[1]):
                best = (rank, prefix)
    return best


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, module: str) -> list[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            elif node.module == "visionbench":
                # `from visionbench import display` imports the submodule display.
                names += [f"visionbench.{alias.name}" if (SRC / alias.name).with_suffix(
                    ".py").exists() or (SRC / alias.name).is_dir() else "visionbench"
                          for alias in node.names]
            elif node.module:
                names.append(node.module)
    return [n for n in names if n == "visionbench" or n.startswith("visionbench.")]


def test_every_module_has_a_layer():
    assert [m for m in _modules() if _place(m)[0] < 0] == []


def test_imports_point_down_and_train_and_evaluate_stay_apart():
    wrong = []
    for module, path in sorted(_modules().items()):
        rank, prefix = _place(module)
        for imported in _imports(path, module):
            other_rank, other_prefix = _place(imported)
            if other_rank > rank or (prefix, other_prefix) in SIBLINGS_APART:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []
