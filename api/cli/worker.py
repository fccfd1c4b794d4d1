"""`pagedrag worker`: the ranks of a parallel engine that run on a machine other than
node 0 (where `pagedrag serve`, `run` or `generate` runs rank 0 and the scheduler)."""

import argparse
import multiprocessing
import signal
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from api.cli.options import add_parallel_options, parallel_options


def add_parsers(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run this machine's ranks of a multi-node engine (node 0 runs pagedrag serve)",
        description="Joins the job node 0 starts (same --tensor-parallel-size, "
        "--pipeline-parallel-size, --nnodes, --master-addr, --master-port) and runs "
        "this machine's share of the ranks until node 0 stops. The model comes from this "
        "machine's store, by the name node 0 serves. Unauthenticated: run it on a private "
        "network only.",
    )
    worker.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="the kind of device the job runs on (default: CUDA when available); node 0's",
    )
    add_parallel_options(worker, worker=True)
    worker.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    import torch

    from engine.distributed.config import ParallelConfig
    from engine.distributed.worker import run_worker as run_rank

    options = parallel_options(args)
    config = ParallelConfig(
        options["tensor_parallel_size"],
        options["pipeline_parallel_size"],
        options["nnodes"],
        args.node_rank,
        options["master_addr"],
        options["master_port"],
        options["distributed_timeout_s"],
    )
    if args.node_rank == 0:
        raise SystemExit(
            "pagedrag: error: node 0 runs the engine: start it with pagedrag serve "
            "(or run, generate) and these flags"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    home = args.settings.engine_options().get("home")
    context = multiprocessing.get_context("spawn")
    ranks: dict[int, BaseProcess] = {
        rank: context.Process(
            target=run_rank, args=(config, rank, device, home), name=f"pagedrag-rank-{rank}"
        )
        for rank in config.node_ranks()
    }
    for process in ranks.values():
        process.start()
    print(
        f"pagedrag worker: node {args.node_rank} of {config.nnodes}, ranks "
        f"{config.node_ranks().start}-{config.node_ranks().stop - 1}, joining "
        f"{config.master_addr}:{config.master_port}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: _stop(ranks.values()))
    return _wait(ranks)


def _wait(ranks: dict[int, BaseProcess]) -> int:
    """Until every rank ends; the first to fail takes the others down with it."""
    pending = {process.sentinel: rank for rank, process in ranks.items()}
    while pending:
        for sentinel in wait(list(pending)):
            rank = pending.pop(sentinel)  # type: ignore[arg-type]
            process = ranks[rank]
            process.join()
            if process.exitcode != 0:
                _stop(ranks.values())
                raise SystemExit(
                    f"pagedrag: error: rank {rank} exited with code {process.exitcode} "
                    "(node 0 stopped, or the job could not be joined: see the log above)"
                )
    return 0


def _stop(processes: Any) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
