"""The import graph points one way: contracts is a leaf, the learner knows no Kafka, nothing imports
the command line, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "learner", "streams", "producers", "consumers", "memstream")
#: What each package may import of the project (besides itself).
ALLOWED = {
    "contracts": set(),
    "learner": {"contracts"},
    "streams": {"contracts", "learner"},
    "producers": {"contracts", "learner"},
    "consumers": {"contracts", "learner"},
    "memstream": {"contracts", "learner", "streams", "producers", "consumers"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` imports run for type checkers only
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_lies_below_it(package):
    wrong = sorted(f"{module} imports {name}" for module, path in modules().items() if module.split(".")[0] == package
                   for name in imports(path, top_level_only=False)
                   if name.split(".")[0] not in ALLOWED[package] | {package})
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back():
    known = modules()
    graph = {m: {r for n in imports(p, top_level_only=True) if (r := resolve(n, known)) and r != m}
             for m, p in known.items()}
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_check_sees_an_import_that_runs_back_up(tmp_path):
    source = tmp_path / "leaf.py"
    source.write_text("def f():\n    from streams.app import main\n")
    assert "streams.app" in imports(source, top_level_only=False)
    assert imports(source, top_level_only=True) == set()
