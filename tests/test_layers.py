"""Architecture tier: imports flow one way, from the bottom layer up, with no circles.

Every `import` and `from ... import` of `rft` and `experiments` modules is read from the source (function-level
imports included, since a function-level import that hides a circle is still a circle) and checked against the
layers below. A module may import its own layer or a lower one, never a higher one, and the whole graph must be
acyclic. A new module must be given a layer here.

    python -m pytest -q tests/test_layers.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Bottom to top. `rft.data.*` names every module of the data package.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "pure math and leaf utilities",
        {"rft", "rft.losses", "rft.rewards", "rft.thinking", "rft.files", "rft.redaction"},
    ),
    ("typed config", {"rft.config", "rft.schedule"}),
    (
        "data, models, tracking",
        {
            "rft.data.*",
            "rft.processor",
            "rft.tiny",
            "rft.models",
            "rft.prompts",
            "rft.distributed",
            "rft.tracking",
            "rft.results",
            "rft.memory",
        },
    ),
    ("model-side building blocks", {"rft.logprobs", "rft.sampling", "rft.engine", "rft.checkpoint"}),
    ("rollout and evaluation", {"rft.rollout", "rft.evaluate"}),
    ("the training loops", {"rft.grpo", "rft.sft"}),
    ("the pipeline and the study", {"rft.testbed", "rft.pipeline", "rft.report.*"}),
    ("the entrypoint and tools", {"experiments.*"}),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [*REPO.glob("rft/**/*.py"), *REPO.glob("experiments/*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def layer_of(module: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if (
                module == m
                or (m.endswith(".*") and module.startswith(m[:-1]))
                or module == m.removesuffix(".*")
            ):
                return i
    raise AssertionError(f"{module} has no layer; add it to LAYERS in tests/test_layers.py")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (top level, functions, TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from rft import models` imports the module rft.models; `from rft.config import X` the module rft.config
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import rft.data.fgvc` -> rft.data.fgvc; unknown -> outside
                name = name.rpartition(".")[0]
            if name and name != module_name(path):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, known) for name, path in modules.items()}


def test_every_module_has_a_layer():
    for module in project_modules():
        layer_of(module)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    graph = import_graph()
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
        for m, deps in sorted(graph.items())
        for d in sorted(deps)
        if layer_of(d) > layer_of(m)
    ]
    assert not upward, "imports must flow from the bottom up:\n" + "\n".join(upward)


def test_no_import_circles():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(d) :] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_library_never_imports_hydra_or_a_tool():
    for name, path in project_modules().items():
        if not name.startswith("rft"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for mod in mods:
                root = mod.split(".")[0]
                assert root not in ("hydra", "omegaconf", "experiments", "tests"), f"{name} imports {mod}"


def test_tests_keep_their_reference_code_out_of_the_tools():
    """A test may exercise a tool (experiments/data.py, report.py, ...) but takes no reference code from one."""
    for path in REPO.glob("tests/*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments.bench"):
                pytest.fail(f"{path.name} imports from {node.module}; keep reference code in rft/ or tests/")


def test_the_checker_sees_a_function_level_circle(tmp_path, monkeypatch):
    """The checker itself: a circle hidden in a function body is found."""
    (tmp_path / "rft").mkdir()
    (tmp_path / "rft" / "__init__.py").write_text("")
    (tmp_path / "rft" / "config.py").write_text("def f():\n    from rft import losses\n")
    (tmp_path / "rft" / "losses.py").write_text("from rft.config import f\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    graph = import_graph()
    assert graph["rft.config"] == {"rft.losses"} and graph["rft.losses"] == {"rft.config"}
    with pytest.raises(pytest.fail.Exception, match="import circle"):
        test_no_import_circles()
