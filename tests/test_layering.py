"""Imports flow one way: api -> rag -> (indexer, engine) -> kernels (DESIGN.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may import from the project; anything else is a layering bug.
ALLOWED = {
    "kernels": {"kernels"},
    "engine": {"engine", "kernels"},
    "indexer": {"indexer"},
    "rag": {"rag", "engine", "indexer"},
    "api": {"api", "rag", "engine", "indexer"},
}


def project_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        forbidden = project_imports(path) - ALLOWED[package]
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"
