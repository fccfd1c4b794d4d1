"""The engine loop: requests in; each step schedules, runs the model, and updates requests.

`step()` reads top-down: schedule -> execute -> sample -> postprocess. It is what the
offline `LLM` and the async server both drive.

One request can never fail a step for the others: a forward pass that raises is run
again on each half of its batch until the sequences that raise are alone, and sampling
or postprocessing that raises for one row is retried row by row. Only the requests whose
part raised end, with `finish_reason` "error"; the rest get their tokens as if nothing
happened (a seeded request draws the same token: its generator is rewound first).
"""

import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

import kernels
from common.errors import InvalidInputError
from engine.block_manager import BlockManager
from engine.config import EngineConfig
from engine.detokenizer import IncrementalDetokenizer
from engine.device import default_device, resolve_dtype
from engine.distributed.executor import ParallelRunner, PendingStep, RankHealth
from engine.distributed.worker import RankSpec
from engine.errors import EngineConfigError, EngineWorkerError, PromptTooLongError
from engine.kv_cache import KVCacheSpec, allocate_kv_cache, default_kv_budget
from engine.library import default_quantization, public_name, resolve_model
from engine.library.store import ModelStore
from engine.model_runner import ModelOutput, ModelRunner
from engine.models.loader import load_model, read_decoder_config
from engine.models.quantization import QuantizationConfig
from engine.models.sharding import ModelShard
from engine.outputs import RequestOutput
from engine.parallel_sampling import SampleGroup, sample_id
from engine.passage_cache import PassageCacheConfig, PassageSpan
from engine.sampler import penalized, sample, token_logprobs
from engine.sampling_params import SamplingParams
from engine.scheduler import ScheduledSequence, Scheduler, SchedulerConfig, SchedulerOutput
from engine.sequence import FinishReason, Sequence, SequenceStatus
from engine.structured_outputs import Grammars
from engine.tokenizer import load_tokenizer

if TYPE_CHECKING:
    from xgrammar import GrammarMatcher

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    seq: Sequence
    prompt: str | None
    detokenizer: IncrementalDetokenizer
    generator: torch.Generator | None  # the request's own when it has a seed
    logprobs: list[dict[int, float]] | None  # per generated token, when the request asks
    matcher: "GrammarMatcher | None" = None  # follows its tokens, with structured outputs


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.model_path: Path = resolve_model(config.model, home=config.home)
        self.model_name = public_name(config.model)  # what messages call it
        self.quantization = config.quantization or default_quantization(config.model)
        self.device = torch.device(config.device) if config.device else default_device()
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.attention_backend = self._attention_backend()
        # NOTE: config.json and the tokenizer are checked before the weights are read, so a
        # broken model folder fails in a second rather than after a long load.
        decoder = read_decoder_config(self.model_path)
        parallel = config.parallel
        try:  # NOTE: before any rank starts, so a split the model cannot take is one line
            ModelShard(
                tp_size=parallel.tensor_parallel_size, pp_size=parallel.pipeline_parallel_size
            ).check(decoder)
        except ValueError as error:
            raise EngineConfigError(f"{self.model_name}: {error}") from error
        self.tokenizer: PreTrainedTokenizerBase = load_tokenizer(self.model_path)
        self.eos_token_ids = self._eos_token_ids()
        # With tensor or pipeline parallelism, `runner` is rank 0's part of it.
        self.parallel: ParallelRunner | None = None
        if config.parallel.is_distributed:
            self.parallel = ParallelRunner(self._rank_spec(), config.parallel, config.home)
            self.runner = self.parallel.local
            spec, num_blocks = self.parallel.kv_spec, self.parallel.num_blocks
            try:
                self._check_kv_blocks(num_blocks, spec, "each rank's share of ")
            except EngineConfigError:
                self.parallel.shutdown()
                raise
        else:
            model = load_model(self.model_path, self.dtype, self.device, *self._quantization())
            m = model.config
            spec = KVCacheSpec(
                m.num_layers, m.num_kv_heads, m.head_dim, config.block_size, self.dtype
            )
            num_blocks = self._check_kv_blocks(self._num_kv_blocks(spec), spec)
            kv_caches = allocate_kv_cache(spec, num_blocks, self.device)
            self.runner = ModelRunner(
                model, kv_caches, config.block_size, self.device, self.attention_backend
            )
        c = self.runner.model.config
        self.grammars = Grammars(self.tokenizer, c.vocab_size, sorted(self.eos_token_ids))
        # NOTE: a sequence must always fit alone in the pool, or preemption could loop forever.
        self.max_model_len = min(
            config.max_model_len or c.max_position_embeddings,
            c.max_position_embeddings,
            num_blocks * config.block_size,
        )
        self.block_manager = BlockManager(
            num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            SchedulerConfig(
                config.max_num_batched_tokens,
                config.max_num_seqs,
                config.pipeline_parallel_size,
            ),
            self.block_manager,
            PassageCacheConfig(
                config.enable_passage_cache,
                config.passage_recompute_tokens,
                config.passage_max_wait_steps,
            ),
        )
        self._pipeline: deque[tuple[SchedulerOutput, PendingStep]] = deque()  # steps started
        self._requests: dict[str, _Request] = {}  # by sequence: a request, or one of its samples
        self._groups: dict[str, SampleGroup] = {}  # requests with n > 1, by request id
        self._group_of: dict[str, str] = {}  # a sample's request id
        self._request_counter = itertools.count()
        self._default_generator = torch.Generator(device=self.device).manual_seed(config.seed)
        logger.info(
            "engine ready: %s, %s (weights: %s) on %s x %d, %s attention, "
            "%d KV blocks of %d tokens (%.2f GiB a rank)",
            self.model_name,
            self.dtype,
            self.quantization,
            self.device,
            config.parallel.world_size,
            self.attention_backend,
            num_blocks,
            config.block_size,
            num_blocks * spec.bytes_per_block / 2**30,
        )

    # ---- requests ------------------------------------------------------------------

    def add_request(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        cache_salt: str | None = None,
        passages: Iterable[tuple[int, int]] = (),
    ) -> str:
        """Queue a prompt (text or token ids); returns its request id. With `params.n` > 1
        its samples run as sequences of their own (parallel_sampling.py).

        `passages` marks where retrieved passages lie in the prompt, as token ranges
        [start, end): with the passage cache on, their KV is reused wherever they recur.
        """
        request_id = request_id or str(next(self._request_counter))
        if request_id in self._requests or request_id in self._groups:
            raise InvalidInputError(f"request id {request_id!r} is already in use")
        token_ids = self.tokenizer(prompt).input_ids if isinstance(prompt, str) else list(prompt)
        self._check_prompt(token_ids)
        spans = _passage_spans(passages, len(token_ids))
        text = prompt if isinstance(prompt, str) else None
        if params.n == 1:
            seq = self._new_request(request_id, text, token_ids, params, cache_salt, spans)
            self.scheduler.add(seq)
            return request_id
        ids = [sample_id(request_id, i) for i in range(params.n)]
        seqs = [
            self._new_request(sample, text, token_ids, _sample_params(params, i), cache_salt, spans)
            for i, sample in enumerate(ids)
        ]
        self._groups[request_id] = SampleGroup(request_id, ids, held=seqs[1:])
        self._group_of.update(dict.fromkeys(ids, request_id))
        self.scheduler.add(seqs[0])
        return request_id

    def _new_request(
        self,
        request_id: str,
        prompt: str | None,
        token_ids: list[int],
        params: SamplingParams,
        cache_salt: str | None,
        passages: tuple[PassageSpan, ...] = (),
    ) -> Sequence:
        seq = Sequence(request_id, list(token_ids), len(token_ids), params, cache_salt)
        seq.passage_spans = passages
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        detokenizer = IncrementalDetokenizer(
            self.tokenizer, params.skip_special_tokens, params.stop
        )
        logprobs: list[dict[int, float]] | None = None if params.logprobs is None else []
        spec = params.structured_outputs
        matcher = None if spec is None else self.grammars.matcher(spec)
        self._requests[request_id] = _Request(
            seq, prompt, detokenizer, generator, logprobs, matcher
        )
        return seq

    def abort_request(self, request_id: str) -> None:
        """Stop a request (every sample of it) now and free its blocks; unknown or
        finished ids are ignored."""
        group = self._groups.pop(request_id, None)
        held = set() if group is None else {seq.request_id for seq in group.held}
        for sequence_id in group.sample_ids if group is not None else [request_id]:
            self._group_of.pop(sequence_id, None)
            request = self._requests.pop(sequence_id, None)
            if request is None or request.seq.is_finished:
                continue
            if sequence_id in held:  # never given to the scheduler: nothing to release
                request.seq.status, request.seq.finish_reason = (
                    SequenceStatus.FINISHED,
                    FinishReason.ABORT,
                )
            else:
                self.scheduler.finish(request.seq, FinishReason.ABORT)

    @property
    def num_steps_in_flight(self) -> int:
        """Steps started and not finished: more than one only with pipeline stages."""
        return len(self._pipeline)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished or bool(self._pipeline)

    # ---- the loop ------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        """Run one iteration; returns an output for each request that got a token in it, or
        that failed in it (finish_reason "error")."""
        if self.parallel is not None:
            return self._pipelined_step(self.parallel)
        scheduler_output = self.scheduler.schedule()
        if scheduler_output.is_empty:
            return []
        written = False
        try:
            ran, failed = self._execute(scheduler_output.scheduled)
            if not failed:
                self.runner.copy_passages_out(scheduler_output.keeps)
                written = True
        finally:
            if not written:
                # NOTE: the scheduler keys blocks in the prefix cache before their KV is
                # computed, and a kept passage's copy is written after the step; a failed
                # sequence's may never be, so no later hit may use them.
                self.block_manager.reset_prefix_cache()
            self.scheduler.finish_step(scheduler_output)
        outputs = [self._fail(seq, error) for seq, error in failed]
        for model_output in ran:
            outputs += self._update(model_output)
        return self._merge_samples(outputs) if self._groups else outputs

    def _pipelined_step(self, runner: ParallelRunner) -> list[RequestOutput]:
        """Across ranks: start this iteration's batch (of sequences no earlier batch still
        holds) while earlier ones run in the later pipeline stages, and finish the oldest
        once the pipeline is full (at once, without stages) or nothing new can start. Any
        failure here is a lost engine (EngineWorkerError), not a request's."""
        scheduler_output = self.scheduler.schedule()
        if not scheduler_output.is_empty:
            pending = runner.submit(scheduler_output.scheduled, scheduler_output.keeps)
            self._pipeline.append((scheduler_output, pending))
            if len(self._pipeline) < runner.config.pipeline_parallel_size:
                return []
        if not self._pipeline:
            return []
        oldest, pending = self._pipeline.popleft()
        try:
            model_output = pending.result()
        finally:
            self.scheduler.finish_step(oldest)
        # NOTE: a request aborted while its step was in the pipeline gets no token.
        live = [
            i
            for i, item in enumerate(model_output.sampling)
            if item.seq.request_id in self._requests and not item.seq.is_finished
        ]
        if len(live) < len(model_output.sampling):
            model_output = ModelOutput(
                [model_output.sampling[i] for i in live], model_output.logits[live]
            )
        outputs = self._update(model_output)
        return self._merge_samples(outputs) if self._groups else outputs

    def _merge_samples(self, outputs: list[RequestOutput]) -> list[RequestOutput]:
        """One output per request: a sample's joins its request's (parallel_sampling.py),
        and a request's first sample, once its prompt is computed, lets the others run."""
        merged: list[RequestOutput] = []
        touched: dict[str, SampleGroup] = {}
        for output in outputs:
            group_id = self._group_of.get(output.request_id)
            if group_id is None:
                merged.append(output)
                continue
            group = self._groups[group_id]
            for seq in group.record(output):
                self.scheduler.add(seq)
            touched[group_id] = group
        for group_id, group in touched.items():
            merged.append(group.merged())
            if group.finished:
                del self._groups[group_id]
                for sequence_id in group.sample_ids:
                    del self._group_of[sequence_id]
        return merged

    def _execute(
        self, scheduled: list[ScheduledSequence]
    ) -> tuple[list[ModelOutput], list[tuple[Sequence, Exception]]]:
        """Run the batch; if it raises, run each half on its own, down to the culprits."""
        try:
            return [self.runner.execute(scheduled)], []
        except Exception as error:
            if len(scheduled) == 1:
                return [], [(scheduled[0].seq, error)]
        half = len(scheduled) // 2
        first_ran, first_failed = self._execute(scheduled[:half])
        second_ran, second_failed = self._execute(scheduled[half:])
        return first_ran + second_ran, first_failed + second_failed

    def _update(self, model_output: ModelOutput) -> list[RequestOutput]:
        """Sample a token for each sequence the model ran to its end, and append it."""
        requests = [self._requests[item.seq.request_id] for item in model_output.sampling]
        self.grammars.mask(model_output.logits, [request.matcher for request in requests])
        outputs = []
        for row, (request, token) in enumerate(
            zip(requests, self._sample(model_output.logits, requests), strict=True)
        ):
            if isinstance(token, Exception):
                outputs.append(self._fail(request.seq, token))
                continue
            try:
                if request.logprobs is not None:  # the request set SamplingParams.logprobs
                    top = request.seq.params.logprobs or 0
                    request.logprobs.append(token_logprobs(model_output.logits[row], token, top))
                outputs.append(self._postprocess(request, token))
            except Exception as error:
                outputs.append(self._fail(request.seq, error))
        return outputs

    def _sample(self, logits: torch.Tensor, requests: list[_Request]) -> list[int | Exception]:
        """The batch's next tokens; if sampling raises, row by row, with the error of each
        row that raises in its place."""
        params = [r.seq.params for r in requests]
        generators: list[torch.Generator | None] = [
            r.generator or self._default_generator for r in requests
        ]

        def draw(rows: slice) -> list[int]:
            rows_logits = logits[rows]
            if any(p.penalizes for p in params[rows]):
                seqs = [r.seq for r in requests[rows]]
                prompts = [seq.token_ids[: seq.num_prompt_tokens] for seq in seqs]
                outputs = [seq.output_token_ids for seq in seqs]
                rows_logits = penalized(rows_logits, params[rows], prompts, outputs)
            return sample(rows_logits, params[rows], generators[rows])

        seeded = [(r.generator, r.generator.get_state()) for r in requests if r.generator]
        try:
            return list(draw(slice(None)))
        except Exception:
            for generator, state in seeded:  # a seeded row draws as if alone
                generator.set_state(state)
        tokens: list[int | Exception] = []
        for row in range(len(requests)):
            try:
                tokens += draw(slice(row, row + 1))
            except Exception as error:
                tokens.append(error)
        return tokens

    def _fail(self, seq: Sequence, error: Exception) -> RequestOutput:
        """End one request whose part of the step raised, and free its blocks."""
        logger.error("request %s failed in a step", seq.request_id, exc_info=error)
        request = self._requests.pop(seq.request_id)
        self.scheduler.finish(seq, FinishReason.ERROR)
        try:
            text = request.detokenizer.text
        except Exception:  # the detokenizer may be what raised
            text = ""
        return RequestOutput(
            request_id=seq.request_id,
            prompt=request.prompt,
            prompt_token_ids=seq.token_ids[: seq.num_prompt_tokens],
            text=text,
            token_ids=seq.output_token_ids,
            num_cached_tokens=seq.num_cached_tokens or 0,
            num_passage_tokens=seq.num_passage_tokens,
            num_reused_passages=seq.num_reused_passages,
            finish_reason=FinishReason.ERROR.value,
            finished=True,
            logprobs=None if request.logprobs is None else list(request.logprobs),
            error=error,
        )

    def _postprocess(self, request: _Request, token_id: int) -> RequestOutput:
        seq = request.seq
        if request.matcher is not None and not request.matcher.accept_token(token_id):
            raise RuntimeError(f"the grammar refused token {token_id} it allowed")
        seq.append_token(token_id)
        request.detokenizer.add_token(token_id)
        reason = self._finish_reason(request, token_id)
        if reason is not None:
            self.scheduler.finish(seq, reason)
            del self._requests[seq.request_id]
        return RequestOutput(
            request_id=seq.request_id,
            prompt=request.prompt,
            prompt_token_ids=seq.token_ids[: seq.num_prompt_tokens],
            text=request.detokenizer.text if reason else request.detokenizer.stable_text,
            token_ids=seq.output_token_ids,
            num_cached_tokens=seq.num_cached_tokens or 0,
            num_passage_tokens=seq.num_passage_tokens,
            num_reused_passages=seq.num_reused_passages,
            finish_reason=reason.value if reason else None,
            finished=reason is not None,
            logprobs=None if request.logprobs is None else list(request.logprobs),
        )

    def _finish_reason(self, request: _Request, token_id: int) -> FinishReason | None:
        seq, params = request.seq, request.seq.params
        if not params.ignore_eos and token_id in self.eos_token_ids:
            return FinishReason.STOP
        if token_id in params.stop_token_ids or request.detokenizer.stopped_on:
            return FinishReason.STOP
        if request.matcher is not None and request.matcher.is_terminated():
            return FinishReason.STOP  # the JSON is complete (even with ignore_eos)
        if params.max_tokens is not None and seq.num_output_tokens >= params.max_tokens:
            return FinishReason.LENGTH
        if seq.num_tokens >= self.max_model_len:
            return FinishReason.LENGTH
        return None

    def _check_prompt(self, token_ids: list[int]) -> None:
        if not token_ids:
            raise InvalidInputError("the prompt is empty")
        if len(token_ids) >= self.max_model_len:
            raise PromptTooLongError(
                f"the prompt has {len(token_ids)} tokens; this engine holds at most "
                f"{self.max_model_len - 1} prompt tokens (max_model_len {self.max_model_len})"
            )
        vocab = self.runner.model.config.vocab_size
        if min(token_ids) < 0 or max(token_ids) >= vocab:
            raise InvalidInputError(f"prompt token ids must be in [0, {vocab})")

    def _quantization(self) -> tuple[QuantizationConfig | None, Path | None]:
        """The quantization asked for, and where its weights are kept between starts."""
        if self.quantization == "none":
            return None, None
        quantization = QuantizationConfig(self.quantization, self.config.quantization_group_size)
        return quantization, ModelStore.default(self.config.home).quantized_weights_path(
            self.model_path, quantization.tag
        )

    def _attention_backend(self) -> str:
        """The attention backend's name, checked before any weight is read."""
        try:
            return kernels.select_backend(self.device, self.config.attention_backend).NAME
        except kernels.AttentionBackendError as error:
            raise EngineConfigError(str(error)) from error

    def _num_kv_blocks(self, spec: KVCacheSpec) -> int:
        """How many blocks the KV budget holds."""
        config = self.config
        budget = config.kv_cache_memory or default_kv_budget(
            self.device, config.kv_cache_memory_fraction
        )
        return spec.num_blocks_for(budget)

    def _check_kv_blocks(self, num_blocks: int, spec: KVCacheSpec, share: str = "") -> int:
        """The pool's blocks; at least 2, or the engine could not run."""
        if num_blocks >= 2:
            return num_blocks
        config = self.config
        pool = (
            f"{share}kv_cache_memory {config.kv_cache_memory:,} bytes"
            if config.kv_cache_memory
            else f"{share}the default KV cache ({config.kv_cache_memory_fraction:.0%} of free "
            "memory)"
        )
        raise EngineConfigError(
            f"{pool} holds {num_blocks} KV blocks of {config.block_size} tokens for "
            f"{self.model_name}; at least 2 ({2 * spec.bytes_per_block:,} bytes) are "
            "needed: give it more, e.g. --kv-cache-memory 512M"
        )

    def _rank_spec(self) -> RankSpec:
        config = self.config
        return RankSpec(
            model=config.model,
            dtype=self.dtype,
            device_type=self.device.type,
            quantization=self._quantization()[0],
            block_size=config.block_size,
            kv_cache_memory=config.kv_cache_memory,
            kv_cache_memory_fraction=config.kv_cache_memory_fraction,
            attention_backend=self.attention_backend,
        )

    def close(self) -> None:
        """Stop the other ranks of a parallel engine (nothing to do for one process)."""
        if self.parallel is not None:
            self.parallel.shutdown()

    def rank_health(self) -> list[RankHealth]:
        """Every rank of the engine (one process: itself, alive)."""
        if self.parallel is not None:
            return self.parallel.health()
        return [RankHealth(0, 0, True, os.getpid())]

    def watch_ranks(self, on_lost: Callable[[EngineWorkerError], None]) -> None:
        """Have `on_lost` called (on another thread) when a rank of a parallel engine
        exits unasked, even while the engine is idle; one process has no ranks to lose."""
        if self.parallel is not None:
            self.parallel.on_lost = on_lost

    def _eos_token_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        try:
            eos = GenerationConfig.from_pretrained(self.model_path).eos_token_id
            ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        except OSError:
            pass  # no generation_config.json: the tokenizer's EOS below is all there is
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)


def _passage_spans(passages: Iterable[tuple[int, int]], num_tokens: int) -> tuple[PassageSpan, ...]:
    """Checked passage ranges: in order, apart, inside the prompt and before its last
    token (which is always computed, to predict the next one)."""
    spans: list[PassageSpan] = []
    for start, end in passages:
        if not (isinstance(start, int) and isinstance(end, int)):
            raise InvalidInputError(
                f"a passage range must be two token indices, got {start!r}, {end!r}"
            )
        if not 0 <= start < end < num_tokens:
            raise InvalidInputError(
                f"passage range [{start}, {end}) must be non-empty and end before the "
                f"prompt's last token ({num_tokens} tokens)"
            )
        if spans and start < spans[-1].end:
            raise InvalidInputError("passage ranges must be in order and must not overlap")
        spans.append(PassageSpan(start, end))
    return tuple(spans)


def _sample_params(params: SamplingParams, index: int) -> SamplingParams:
    """Sample `index` of a request: one sample, drawn from seed + index when seeded."""
    seed = None if params.seed is None else params.seed + index
    return replace(params, n=1, seed=seed)
