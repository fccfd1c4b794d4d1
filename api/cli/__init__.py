"""The `pagedrag` command: one subcommand per module, errors as one line, never a traceback."""

import argparse
import os
import sys

from api.cli import ask, documents, generate, models, serve, worker
from api.settings import Settings
from common.errors import PagedRAGError
from common.version import VERSION


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pagedrag", description="Local RAG on a paged-attention engine."
    )
    parser.add_argument("--version", action="version", version=f"pagedrag {VERSION}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (models, generate, documents, serve, ask, worker):
        module.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Nothing may download at run time: models come from the local store only.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        args.settings = Settings.from_environment()  # the one place variables are read
        return int(args.handler(args) or 0)
    except PagedRAGError as error:
        print(f"pagedrag: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
