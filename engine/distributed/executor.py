"""Rank 0's side of a parallel engine: starts this node's workers, sends them each step,
and notices when one is lost.

`ParallelRunner.submit` starts a step: its inputs are built by rank 0's own runner,
sent to every rank, and run on rank 0's shard alongside them; its logits are waited for
later (`PendingStep.result`), so pipeline stages can run several steps at once.
A rank that dies, or a collective that fails, is not a failed request but a lost engine:
`EngineWorkerError`, and the engine stops rather than wait on a rank that will never
answer (a peer's closed connection fails the others' collectives at once; a silent one
after `ParallelConfig.timeout_s`).
"""

import atexit
import logging
import multiprocessing
import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from engine.distributed.config import ParallelConfig
from engine.distributed.groups import ParallelGroups, init_groups
from engine.distributed.worker import (
    RankSpec,
    RunStep,
    Stop,
    build_rank,
    rank_device,
    run_worker,
)
from engine.errors import EngineWorkerError
from engine.kv_cache import KVCacheSpec
from engine.model_runner import ModelOutput, ModelRunner, PendingLogits
from engine.passage_cache import PassageKeep
from engine.scheduler import ScheduledSequence

logger = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # a worker told to stop that is still running after this is killed


@dataclass(frozen=True)
class PendingStep:
    """A step in the pipeline; `result` waits for its logits from the last stage."""

    runner: "ParallelRunner"
    sampling: list[ScheduledSequence]
    logits: PendingLogits

    def result(self) -> ModelOutput:
        with self.runner._collective():
            return ModelOutput(self.sampling, self.logits.wait())


@dataclass(frozen=True)
class RankHealth:
    rank: int
    node: int
    alive: bool | None  # None: on another node, seen only through its collectives
    pid: int | None = None  # this node's ranks
    exitcode: int | None = None


class ParallelRunner:
    def __init__(self, spec: RankSpec, config: ParallelConfig, home: Path | None) -> None:
        if config.master_port == 0:
            config = replace(config, master_port=_free_port(config.master_addr))
        self.config = config
        self.failure: EngineWorkerError | None = None
        self.on_lost: Callable[[EngineWorkerError], None] | None = None  # told of a failure
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {
            rank: context.Process(
                target=run_worker,
                args=(config, rank, spec.device_type, home),
                name=f"pagedrag-rank-{rank}",
                daemon=True,
            )
            for rank in config.node_ranks()
            if rank != 0
        }
        for worker in self._workers.values():
            worker.start()
        self._stopping = threading.Event()
        self._finalizer = weakref.finalize(
            self, _stop_workers, list(self._workers.values()), self._stopping
        )
        threading.Thread(target=self._watch, name="pagedrag-ranks", daemon=True).start()
        # NOTE: a script that never closes its LLM still stops its ranks cleanly at exit
        # (a process group torn down with sends in flight aborts the interpreter).
        atexit.register(_shutdown_at_exit, weakref.ref(self))
        try:
            self.groups: ParallelGroups = init_groups(
                config, 0, rank_device(config, 0, spec.device_type)
            )
            self.groups.broadcast(spec)
            parts = build_rank(spec, self.groups, home)
        except Exception:
            self.shutdown()
            raise
        self.local: ModelRunner = parts.runner
        self.num_blocks = parts.num_blocks
        self.kv_spec: KVCacheSpec = parts.kv_spec

    def submit(self, scheduled: list[ScheduledSequence], keeps: list[PassageKeep]) -> PendingStep:
        """Start a step and return before the later pipeline stages have run it, so the
        next step's first stage can run meanwhile; the passages it keeps are copied out
        by each rank right after its forward pass (every rank runs steps in order)."""
        step, sampling = self.local.prepare(scheduled)
        step = replace(step, passages_out=self.local.passages_out(keeps))
        with self._collective():
            self.groups.broadcast(RunStep(step))
            pending = self.local.start(step)
        assert pending is not None
        return PendingStep(self, sampling, pending)

    def health(self) -> list[RankHealth]:
        """Every rank: this node's workers as their processes stand, others unknown."""
        ranks = [RankHealth(0, 0, self.failure is None, os.getpid())]
        for rank in range(1, self.config.world_size):
            worker = self._workers.get(rank)
            node = rank // self.config.ranks_per_node
            if worker is None:
                ranks.append(RankHealth(rank, node, None if self.failure is None else False))
            else:
                alive = worker.is_alive()
                ranks.append(RankHealth(rank, node, alive, worker.pid, worker.exitcode))
        return ranks

    def shutdown(self) -> None:
        """Tell every rank to stop and wait for this node's workers (killing stragglers)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        groups = getattr(self, "groups", None)
        if groups is not None and self.failure is None:
            try:
                groups.broadcast(Stop())
            except Exception:  # a lost rank: the others leave when their collectives fail
                logger.warning("could not tell every rank to stop", exc_info=True)
        self._finalizer()
        if groups is not None:
            groups.close()

    @contextmanager
    def _collective(self) -> Iterator[None]:
        """Around calls every rank takes part in: any failure loses the engine."""
        if self.failure is not None:
            raise self.failure
        try:
            yield
        except Exception as error:
            size = self.config.world_size
            raise self._fail(f"a step across the {size} ranks failed: {error}") from error

    def _fail(self, message: str) -> EngineWorkerError:
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = EngineWorkerError(
                    f"{message}; the parallel engine cannot go on: restart the server "
                    "(and every `pagedrag worker`)"
                )
                logger.error("%s", self.failure)
        assert self.failure is not None
        if first and self.on_lost is not None:
            self.on_lost(self.failure)
        return self.failure

    def _watch(self) -> None:
        """Wait on this node's workers; the first to exit unasked loses the engine."""
        pending = {worker.sentinel: rank for rank, worker in self._workers.items()}
        if not pending:
            return
        ready = wait(list(pending))
        if self._stopping.is_set():
            return
        rank = pending[ready[0]]  # type: ignore[index]
        worker = self._workers[rank]
        worker.join(1.0)  # reaped, so its exit code is known
        self._fail(f"rank {rank} (process {worker.pid}) exited with code {worker.exitcode}")


def _shutdown_at_exit(runner: "weakref.ref[ParallelRunner]") -> None:
    alive = runner()
    if alive is not None:
        alive.shutdown()


def _stop_workers(workers: list[BaseProcess], stopping: threading.Event) -> None:
    """Join the workers told to stop (`shutdown`), killing any that hang; without
    `shutdown` (the runner collected, or the process exiting) they wait for a step that
    will never come, so they are killed at once."""
    grace = STOP_GRACE_S if stopping.is_set() else 0.0
    stopping.set()  # NOTE: before they exit: these exits are asked for, not a lost engine
    for worker in workers:
        worker.join(grace)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])
