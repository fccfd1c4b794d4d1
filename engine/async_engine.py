"""Serving: one thread owns an `LLMEngine` and steps it; callers anywhere stream from it.

`LLMEngine` is not thread-safe, so only the engine thread started here calls it. Callers
send it commands (add, abort, stop) through a queue, which it drains between steps, so
a new request joins the running batch at the next step; idle, it sleeps on the queue.
Outputs go to each request's sink: its caller's asyncio queue, put on the caller's own
loop with `call_soon_threadsafe`, or a plain queue for synchronous callers.
"""

import asyncio
import queue
import signal
import threading
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from common.own_thread import run_on_own_thread
from engine.config import EngineConfig
from engine.distributed.executor import RankHealth
from engine.engine_stats import EngineCounters, EngineStats, snapshot
from engine.errors import (
    EngineClosedError,
    EngineOverloadedError,
    EngineStepError,
    EngineWorkerError,
)
from engine.llm_engine import LLMEngine
from engine.outputs import RequestOutput
from engine.sampling_params import SamplingParams

Prompt = str | list[int]
Item = RequestOutput | BaseException | None  # an output, an error to raise, or None: it ended
Sink = Callable[[Item], None]  # hands an item to one request's consumer, from the engine thread

CLOSED_MESSAGE = "the engine has been shut down; start a new one to serve requests"


@dataclass(frozen=True, slots=True)
class _Add:
    request_id: str
    prompt: Prompt
    params: SamplingParams
    cache_salt: str | None  # prefix-cache namespace
    sink: Sink  # where the request's outputs go
    passages: tuple[tuple[int, int], ...] = ()  # retrieved passages' token ranges


@dataclass(frozen=True, slots=True)
class _Abort:
    request_id: str
    sink: Sink | None  # abort only while the id still has this sink; None: whoever holds it


@dataclass(frozen=True, slots=True)
class _Stop:
    """Ends the engine thread; whatever is still in flight fails with EngineClosedError."""


@dataclass(frozen=True)
class _Lost:
    """A rank of a parallel engine is gone: everything in flight fails with its error."""

    error: EngineWorkerError


class AsyncLLMEngine:
    """One background thread owns an LLMEngine and steps it; callers on any thread or
    event loop submit requests and read their token streams.

    Args:
        engine: the engine to serve; nothing else may call it from now on.
        max_pending_requests: unfinished requests accepted at once; more are refused
            (`EngineOverloadedError`) rather than queued without bound.
    """

    def __init__(self, engine: LLMEngine, *, max_pending_requests: int = 256) -> None:
        if max_pending_requests < 1:
            raise ValueError(f"max_pending_requests must be positive, got {max_pending_requests}")
        self.engine = engine
        self.max_pending_requests = max_pending_requests
        self._commands: queue.SimpleQueue[_Add | _Abort | _Stop | _Lost] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the two fields below, which every thread touches
        self._num_pending = 0  # requests submitted that the engine thread has not ended yet
        self._closed = False  # set once shutdown begins; no add is queued after it
        self.lost: EngineWorkerError | None = None  # why a parallel engine stopped on its own
        # Called on the engine thread once a parallel engine is lost (a server exits).
        self.on_lost: Callable[[EngineWorkerError], None] | None = None
        self._sinks: dict[str, Sink] = {}  # engine thread only: the consumer of each live request
        self._counters = EngineCounters()  # engine thread only
        # NOTE: replaced whole by the engine thread, so a reader on any thread sees one
        # consistent snapshot without taking a lock.
        self._stats = snapshot(engine, self._counters)
        self._thread = threading.Thread(target=self._run, name="pagedrag-engine", daemon=True)
        self._thread.start()
        engine.watch_ranks(lambda error: self._commands.put(_Lost(error)))

    @classmethod
    def from_config(cls, config: EngineConfig, **kwargs: Any) -> "AsyncLLMEngine":
        """Load the model and start serving it; `kwargs` go to the constructor.

        NOTE: loaded on a thread that then exits, so that the caller's thread keeps no
        OpenMP team to slow the engine thread's steps (`common/own_thread.py`).
        """
        return cls(run_on_own_thread(LLMEngine, config), **kwargs)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.engine.tokenizer

    @property
    def model_name(self) -> str:
        """The model's public name: its library name, else its folder's or file's."""
        return self.engine.model_name

    @property
    def model_path(self) -> Path:
        return self.engine.model_path

    @property
    def max_model_len(self) -> int:
        """The longest sequence (prompt and output) the engine accepts, in tokens."""
        return self.engine.max_model_len

    @property
    def num_unfinished(self) -> int:
        """Requests submitted and not yet ended: a server unloads only an idle engine."""
        with self._lock:
            return self._num_pending

    # ---- callers, on any thread --------------------------------------------------------

    async def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        request_id: str | None = None,
        cache_salt: str | None = None,
        passages: Sequence[tuple[int, int]] = (),
    ) -> AsyncGenerator[RequestOutput, None]:
        """Stream one request: an output each step it gets a token, the last one `finished`.
        `passages` are the prompt's retrieved passages (`LLMEngine.add_request`).

        Leaving early (`aclose()`, cancellation, or `break` once the generator is
        collected; `contextlib.aclosing` makes that prompt) aborts the request.
        Raises `EngineOverloadedError`, `EngineClosedError` and what `add_request` raises
        on the first `__anext__`; `EngineStepError` or `EngineClosedError` midway.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Item] = asyncio.Queue()
        if params.structured_outputs is not None:
            # NOTE: compiled here, off the engine thread, which then finds it in the
            # compiler's cache: a slow schema never pauses other requests' steps.
            await asyncio.to_thread(self.engine.grammars.compile, params.structured_outputs)

        def sink(item: Item) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        request_id = self._submit(prompt, params, request_id, cache_salt, sink, passages)
        ended = False  # the engine has let go of the request: nothing left to abort
        try:
            while not ended:
                item = await items.get()
                ended = _is_last(item)
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    yield item
        finally:
            if not ended:
                self._commands.put(_Abort(request_id, sink))

    async def finish(
        self, prompt: Prompt, params: SamplingParams, *, cache_salt: str | None = None
    ) -> RequestOutput:
        """One request's finished output, for callers that need only the whole text."""
        last = None
        async with aclosing(self.generate(prompt, params, cache_salt=cache_salt)) as outputs:
            async for last in outputs:  # noqa: B007
                pass
        if last is None:
            raise RuntimeError("the engine finished a request without producing a token")
        return last

    def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        request_id: str | None = None,
        cache_salt: str | None = None,
    ) -> Generator[RequestOutput, None, None]:
        """`generate` for synchronous callers; closing the iterator early aborts."""
        items: queue.SimpleQueue[Item] = queue.SimpleQueue()
        sink = items.put  # NOTE: one bound method, so the abort below can name this request
        request_id = self._submit(prompt, params, request_id, cache_salt, sink)
        ended = False
        try:
            while not ended:
                item = items.get()
                ended = _is_last(item)
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    yield item
        finally:
            if not ended:
                self._commands.put(_Abort(request_id, sink))

    def complete(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, cache_salt: str | None = None
    ) -> list[RequestOutput]:
        """Each prompt's finished output; submitted together, so they share steps.

        NOTE: for many short requests (judging passages): what a step costs whatever its
        size (a quantized model dequantizes its weights for every prefill step) is paid
        once for all of them rather than once each.
        """
        pending: list[tuple[str, Sink, queue.SimpleQueue[Item]]] = []
        try:
            for prompt in prompts:
                items: queue.SimpleQueue[Item] = queue.SimpleQueue()
                sink: Sink = items.put  # NOTE: one bound method, so an abort can name this request
                pending.append((self._submit(prompt, params, None, cache_salt, sink), sink, items))
            outputs = [_final(items) for _, _, items in pending]
        except BaseException:
            for request_id, sink, _ in pending:  # ended ones ignore it
                self._commands.put(_Abort(request_id, sink))
            raise
        return outputs

    def abort(self, request_id: str) -> None:
        """Stop a request and free its blocks; its stream ends without a finished output."""
        self._commands.put(_Abort(request_id, None))

    def rank_health(self) -> list[RankHealth]:
        """Every process of the engine; all down once a parallel engine is lost."""
        ranks = self.engine.rank_health()
        if self.lost is None:
            return ranks
        return [replace(rank, alive=False if rank.alive is None else rank.alive) for rank in ranks]

    def stats(self) -> EngineStats:
        """The engine as of its latest command or step."""
        return self._stats

    def shutdown(self) -> None:
        """Stop the engine thread after its current step; requests in flight then fail
        with `EngineClosedError`. Safe to call more than once."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._commands.put(_Stop())
        self._thread.join()

    def __enter__(self) -> "AsyncLLMEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def _submit(
        self,
        prompt: Prompt,
        params: SamplingParams,
        request_id: str | None,
        cache_salt: str | None,
        sink: Sink,
        passages: Sequence[tuple[int, int]] = (),
    ) -> str:
        """Queue a request for the engine thread; refuses at once when closed or full."""
        request_id = request_id or uuid.uuid4().hex
        prompt = prompt if isinstance(prompt, str) else list(prompt)  # the caller may reuse it
        with self._lock:
            if self._closed:
                raise EngineClosedError(self._closed_message())
            if self._num_pending >= self.max_pending_requests:
                raise EngineOverloadedError(
                    f"the engine already has {self._num_pending} unfinished requests "
                    f"(max_pending_requests={self.max_pending_requests}); retry later"
                )
            self._num_pending += 1
            # NOTE: queued under the lock, so no add can land behind the stop command.
            self._commands.put(_Add(request_id, prompt, params, cache_salt, sink, tuple(passages)))
        return request_id

    # ---- the engine thread ---------------------------------------------------------------

    def _run(self) -> None:
        # NOTE: Ctrl-C and SIGTERM must reach the main thread. A process-wide signal goes
        # to any thread that does not block it, and one taken here (or by the OpenMP team
        # this thread starts, which inherits the mask) would not wake a main thread
        # blocked reading the prompt: the REPL's Ctrl-C went unseen until Enter.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            while self._apply_commands():
                if self.engine.has_unfinished_requests() and not self._step():
                    break
        finally:
            self._close()
            self.engine.close()
        if self.lost is not None and self.on_lost is not None:
            self.on_lost(self.lost)

    def _apply_commands(self) -> bool:
        """Apply every queued command, sleeping on the queue while idle; False on stop."""
        while True:
            idle = not self.engine.has_unfinished_requests()
            try:
                command = self._commands.get(block=idle)
            except queue.Empty:
                return True
            if isinstance(command, _Stop):
                return False
            if isinstance(command, _Lost):
                self.lost = command.error
                return False
            if isinstance(command, _Add):
                self._add(command)
            else:
                self._abort(command)
            self._publish()

    def _add(self, command: _Add) -> None:
        try:
            self.engine.add_request(
                command.prompt,
                command.params,
                command.request_id,
                command.cache_salt,
                command.passages,
            )
        except Exception as error:  # a bad prompt fails its own caller and nobody else
            self._counters.num_rejected_requests += 1
            self._release()
            _send(command.sink, error)
            return
        self._sinks[command.request_id] = command.sink

    def _abort(self, command: _Abort) -> None:
        sink = self._sinks.get(command.request_id)
        if sink is None or (command.sink is not None and command.sink is not sink):
            return  # it already ended, or its id now belongs to a newer request
        self._counters.num_aborted_requests += 1
        self._stop(command.request_id, None)

    def _step(self) -> bool:
        """One engine step, its outputs handed out; False when the engine is lost."""
        self._counters.num_steps += 1
        try:
            outputs = self.engine.step()
        except EngineWorkerError as error:
            self.lost = error
            return False
        except Exception as error:
            self._fail_step(error)
            outputs = []
        for output in outputs:
            if output.error is None:
                self._counters.count_output(output)
        self._publish()  # NOTE: first, so that whoever holds an output sees it counted
        for output in outputs:
            if output.error is not None:
                self._stop(output.request_id, self._step_error(output.request_id, output.error))
            elif output.finished:
                self._end(output.request_id, output)
            elif not _send(self._sinks[output.request_id], output):
                self._abort(_Abort(output.request_id, None))  # its consumer's loop is closed
        self._publish()
        return True

    def _fail_step(self, error: Exception) -> None:
        """Fail the requests of a step that raised; waiting requests and the engine go on.

        Each request not waiting was in the step (or finished in it, output lost) and may
        be half-updated, so it is aborted. NOTE: the scheduler keys blocks in the prefix
        cache before their KV is computed, so the cache is forgotten: a hit on a block the
        step never filled would serve garbage.
        """
        waiting = {seq.request_id for seq in self.engine.scheduler.waiting}
        for request_id in [r for r in self._sinks if r not in waiting]:
            self._stop(request_id, self._step_error(request_id, error))
        self.engine.block_manager.reset_prefix_cache()

    def _step_error(self, request_id: str, error: BaseException) -> EngineStepError:
        """What the caller of a request that failed in a step gets (counted once)."""
        self._counters.num_failed_requests += 1
        failure = EngineStepError(
            f"the engine step running request {request_id!r} failed "
            f"({type(error).__name__}: {error}); the request was aborted and can be retried"
        )
        failure.__cause__ = error
        return failure

    def _close(self) -> None:
        """Fail every queued and live request: the engine thread is going away."""
        with self._lock:
            self._closed = True  # also when the thread dies of a bug, so callers are refused
        while not self._commands.empty():
            command = self._commands.get()
            if isinstance(command, _Add):
                self._release()
                _send(command.sink, EngineClosedError(self._closed_message()))
        for request_id in list(self._sinks):
            self._counters.num_failed_requests += 1
            self._stop(request_id, EngineClosedError(self._closed_message()))
        self._publish()

    def _closed_message(self) -> str:
        return CLOSED_MESSAGE if self.lost is None else f"the engine was lost: {self.lost}"

    def _stop(self, request_id: str, item: Item) -> None:
        """Abort a live request in the engine, handing its consumer a last item."""
        self.engine.abort_request(request_id)
        self._end(request_id, item)

    def _end(self, request_id: str, item: Item) -> None:
        """Let go of a request the engine is done with, then hand its consumer `item`."""
        self._release()  # NOTE: first, so that a caller seeing its request end may submit again
        _send(self._sinks.pop(request_id), item)

    def _release(self) -> None:
        with self._lock:
            self._num_pending -= 1

    def _publish(self) -> None:
        self._stats = snapshot(self.engine, self._counters)


def _final(items: "queue.SimpleQueue[Item]") -> RequestOutput:
    """Read a synchronous request's items to its finished output; raise what it failed with."""
    while True:
        item = items.get()
        if isinstance(item, BaseException):
            raise item
        if item is None:
            raise RuntimeError("the request was aborted before it finished")
        if item.finished:
            return item


def _is_last(item: Item) -> bool:
    return not isinstance(item, RequestOutput) or item.finished


def _send(sink: Sink, item: Item) -> bool:
    """Hand an item to a consumer; False if it is gone (`call_soon_threadsafe` on a
    closed loop raises RuntimeError)."""
    try:
        sink(item)
    except RuntimeError:
        return False
    return True
