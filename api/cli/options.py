"""Argument types shared by several commands."""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.settings import DATA_DIR, DATABASE_URL, HOME, Settings
from engine.config import EngineConfig

UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def size_argument(text: str) -> int:
    """A byte count such as 512M or 2G (argparse type)."""
    try:
        if text[-1:].upper() in UNITS:
            return int(float(text[:-1]) * UNITS[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None


def add_weight_options(parser: argparse.ArgumentParser) -> None:
    """How the model's weights are held: --dtype and --quantization (vLLM's names)."""
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="default: best for the device"
    )
    parser.add_argument(
        "--quantization",
        choices=["none", "int8", "int4"],
        default=None,
        help="weight-only quantization of the linears, made once and kept in the model store "
        "(default: the model's own: int4 for qwen2.5-coder:1.5b-instruct, else none)",
    )
    parser.add_argument(
        "--quantization-group-size",
        type=int,
        default=32,
        metavar="N",
        help="int4: input columns sharing one scale, a multiple of 16 (default: 32)",
    )
    add_parallel_options(parser)


def add_parallel_options(parser: argparse.ArgumentParser, *, worker: bool = False) -> None:
    """How many processes hold the model and where they meet (vLLM's and torchrun's
    names). A job over several machines: this command on node 0, `pagedrag worker` on
    the others, all with the same sizes and --master-addr/--master-port."""
    group = parser.add_argument_group("parallelism (README: Scaling out)")
    group.add_argument(
        "--tensor-parallel-size",
        "-tp",
        type=int,
        default=1,
        metavar="N",
        help="processes that split each layer (default 1)",
    )
    group.add_argument(
        "--pipeline-parallel-size",
        "-pp",
        type=int,
        default=1,
        metavar="N",
        help="processes that split the layers into stages (default 1)",
    )
    group.add_argument(
        "--nnodes", type=int, default=1, metavar="N", help="machines in the job (default 1)"
    )
    if worker:
        group.add_argument(
            "--node-rank", type=int, required=True, metavar="I", help="this machine: 1 .. nnodes-1"
        )
    group.add_argument(
        "--master-addr",
        default="127.0.0.1",
        metavar="HOST",
        help="node 0's address on the private network (default 127.0.0.1)",
    )
    group.add_argument(
        "--master-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the port on node 0 the ranks meet at (default: any free one; one machine only)",
    )
    group.add_argument(
        "--network-interface",
        metavar="IFACE",
        help="the network interface the ranks talk over (gloo's and NCCL's SOCKET_IFNAME)",
    )
    group.add_argument(
        "--distributed-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="a step or a join waiting longer than this on a rank fails (default 600)",
    )


def parallel_options(args: argparse.Namespace) -> dict[str, Any]:
    """The EngineConfig fields `add_parallel_options` set; the network interface goes to
    the environment every rank this process starts inherits."""
    if args.network_interface:
        os.environ["GLOO_SOCKET_IFNAME"] = args.network_interface
        os.environ["NCCL_SOCKET_IFNAME"] = args.network_interface
    return {
        "tensor_parallel_size": args.tensor_parallel_size,
        "pipeline_parallel_size": args.pipeline_parallel_size,
        "nnodes": args.nnodes,
        "master_addr": args.master_addr,
        "master_port": args.master_port,
        "distributed_timeout_s": args.distributed_timeout,
    }


def weight_options(args: argparse.Namespace) -> dict[str, Any]:
    """The EngineConfig fields `add_weight_options` set, and those the environment's
    settings decide (the model store's home, a forced attention backend)."""
    settings: Settings = args.settings
    options: dict[str, Any] = {
        **settings.engine_options(),
        "quantization": args.quantization,  # None: the model's own
        "quantization_group_size": args.quantization_group_size,
        **parallel_options(args),
    }
    if args.dtype:
        options["dtype"] = args.dtype
    return options


@dataclass(frozen=True)
class LibraryOptions:
    """Where the library lives: every command that opens it gets all three, or a command
    would read another database than the one `ingest` wrote."""

    data_dir: Path
    embedder: str | None  # None: the index's own, else the default
    database_url: str | None  # None: SQLite in data_dir


def add_library_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --embedder and --database-url, for every command that opens the library."""
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"index location (default: ${DATA_DIR}, else ${HOME}/data, else "
        "~/.cache/pagedrag/data)",
    )
    parser.add_argument(
        "--embedder",
        default=None,
        help="all-minilm-l6-v2 (default), multilingual-e5-small, or a sentence-transformers "
        "folder (default: the index's own)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of the database, e.g. postgresql+psycopg://user@host/db "
        f"(default: ${DATABASE_URL}, else SQLite in the data directory)",
    )


def library_options(args: argparse.Namespace) -> LibraryOptions:
    """The options `add_library_options` set; the environment's (`args.settings`) fill
    in what a flag leaves out."""
    settings: Settings = args.settings
    return LibraryOptions(
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else settings.library.data_dir,
        embedder=args.embedder,
        database_url=args.database_url or settings.library.database_url,
    )


def add_tenant_option(parser: argparse.ArgumentParser) -> None:
    """--tenant: whose collections a command works on, as an API key's tenant does on
    the server."""
    parser.add_argument(
        "--tenant",
        default=None,
        help="work on this tenant's collections, as its API keys do on the server "
        "(default: 'default', that of an open server and of --api-key)",
    )


def tenant_option(args: argparse.Namespace) -> str:
    from indexer.store import DEFAULT_TENANT  # imported late: `--help` stays quick

    return str(args.tenant or DEFAULT_TENANT)


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """What every command that runs the RAG pipeline takes: model, library, weights, KV."""
    parser.add_argument("--model", help="library name, HF directory or .gguf (default model)")
    add_library_options(parser)
    add_weight_options(parser)
    parser.add_argument(
        "--kv-cache-memory",
        type=size_argument,
        default=None,
        metavar="BYTES",
        help="KV pool size, e.g. 2G (default: a fraction of free memory)",
    )
    parser.add_argument("--max-tokens", type=int, default=None, help="longest answer, in tokens")
    parser.add_argument(
        "--no-prefix-caching",
        action="store_true",
        help="recompute every prompt instead of reusing cached prefixes (for benchmarks)",
    )
    parser.add_argument(
        "--passage-cache",
        choices=("off", "on"),
        default="on",
        help="reuse a retrieved passage's KV wherever it recurs in a prompt, not only "
        "after an identical prefix; off: prefix caching alone, exact (default: on; "
        "docs/benchmarks.md has its measured speed and accuracy)",
    )
    parser.add_argument(
        "--passage-recompute-tokens",
        type=int,
        default=EngineConfig.passage_recompute_tokens,
        metavar="K",
        help="with --passage-cache on: the first K tokens of each reused passage are "
        f"computed again in their new context (default: {EngineConfig.passage_recompute_tokens})",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine `add_pipeline_options` describe, with what the environment decides."""
    options: dict[str, Any] = weight_options(args)
    if args.kv_cache_memory:
        options["kv_cache_memory"] = args.kv_cache_memory
    if args.no_prefix_caching:
        options["enable_prefix_caching"] = False
    options["enable_passage_cache"] = args.passage_cache == "on"
    options["passage_recompute_tokens"] = args.passage_recompute_tokens
    return EngineConfig(model=args.model, **options)
