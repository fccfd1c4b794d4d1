"""Imports flow one way: bench -> api -> rag -> (indexer, engine) -> kernels, with
`common` below them all (DESIGN.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "bench" / "work"  # gitignored: the peers' virtualenvs, downloaded models
# What each package may import from the project; anything else is a layering bug.
ALLOWED = {
    "common": {"common"},
    "kernels": {"kernels", "common"},
    "engine": {"engine", "kernels", "common"},
    "indexer": {"indexer", "common"},
    "rag": {"rag", "engine", "indexer", "common"},
    "api": {"api", "rag", "engine", "indexer", "common"},
    "bench": {"bench", "api", "rag", "engine", "indexer", "kernels", "common"},
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
        if path.is_relative_to(SCRATCH):
            continue
        forbidden = project_imports(path) - ALLOWED[package]
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


def test_no_route_module_imports_another() -> None:
    """Routes translate requests; what two of them share lives in a service module."""
    routes = ROOT / "api" / "server" / "routes"
    for path in routes.glob("*.py"):
        modules = {
            node.module
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module
        }
        imported = {m for m in modules if m.startswith("api.server.routes")}
        assert not imported, f"{path.relative_to(ROOT)} imports {sorted(imported)}"


@pytest.mark.parametrize("package", ["common", "kernels", "engine", "indexer", "rag"])
def test_only_the_edge_reads_the_environment(package: str) -> None:
    """Settings come in as arguments; `PAGEDRAG_` variables are read in api/settings.py."""
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            reads = (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(alias.name in ("environ", "getenv") for alias in node.names)
            )
            assert not reads, f"{path.relative_to(ROOT)}:{node.lineno} reads the environment"
