"""Turns one scheduled step into tensors, runs the model, and returns next-token logits.

The batch is flattened with no padding: the new tokens of every sequence are
concatenated, decodes first (so the attention backend can batch them), then prefill
chunks. Each token gets its position and the cache slot its KV is written to; each
sequence gets its block table and context length. A sequence whose step copies cached
passages in computes the runs between them: each run is a query segment of its own,
with its own context length, over the sequence's block table.

Passage KV moves here too (passage_cache.py): cached passages are copied into a
sequence's blocks before the forward pass, keys turned to their new positions, and
passages a sequence computed are copied out into the cache's blocks after it.

A step's inputs are built once, on the CPU, as a `StepInput`: under tensor or pipeline
parallelism rank 0 builds it and every rank runs it on its own shard (`run`). A stage
other than the first takes its hidden states from the stage before; the last stage's
first rank computes the logits and, when it is not rank 0, sends them there.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from engine.distributed.groups import ParallelGroups
from engine.models.decoder import DecoderForCausalLM, KVCache
from engine.passage_cache import PassageKeep
from engine.scheduler import ScheduledSequence
from kernels import PagedAttentionMetadata


@dataclass(frozen=True)
class KVMoves:
    """KV to copy from some cache slots to others, in every layer; with positions, each
    key is turned from the position it was computed at to the one it takes now."""

    src: torch.Tensor  # [N] int64 slots
    dst: torch.Tensor  # [N] int64 slots
    old_positions: torch.Tensor | None = None  # [N]
    new_positions: torch.Tensor | None = None  # [N]


@dataclass(frozen=True)
class StepInput:
    """Everything a rank needs to run one step; built on the CPU, moved by `run`."""

    input_ids: torch.Tensor  # [num_tokens]
    positions: torch.Tensor  # [num_tokens]
    metadata: PagedAttentionMetadata
    sample_indices: torch.Tensor  # [num_samples]: rows whose hidden state predicts a next token
    passages_in: KVMoves | None  # cached passages copied in before the forward pass
    passages_out: KVMoves | None = None  # computed passages copied out after it (pipelined)


@dataclass
class PendingLogits:
    """Rank 0's logits of a step: computed here, or on their way from the last stage."""

    logits: torch.Tensor  # [num_samples, vocab] float32, filled once `work` completes
    work: Any = None  # the receive's torch Work; None when computed here

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
        return self.logits


@dataclass(frozen=True)
class ModelOutput:
    sampling: list[ScheduledSequence]  # sequences that get a new token this step
    logits: torch.Tensor  # [num_samples, vocab] float32, one row per entry of `sampling`


class ModelRunner:
    def __init__(
        self,
        model: DecoderForCausalLM,
        kv_caches: list[KVCache],
        block_size: int,
        device: torch.device,
        attention_backend: str | None = None,  # forced by name; None: by device
        groups: ParallelGroups | None = None,  # None: the whole model in this process
    ) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = device
        self.attention_backend = attention_backend
        self.groups = groups
        self._sends: list[Any] = []  # a stage's sends of its last step, still in flight

    def execute(self, scheduled: list[ScheduledSequence]) -> ModelOutput:
        step, sampling = self.prepare(scheduled)
        logits = self.run(step)
        assert logits is not None  # the engine's own process is rank 0
        return ModelOutput(sampling, logits)

    def run(self, step: StepInput) -> torch.Tensor | None:
        """Run a step on this rank's shard; [num_samples, vocab] float32 logits on rank 0,
        None on the other ranks."""
        pending = self.start(step)
        return None if pending is None else pending.wait()

    @torch.inference_mode()
    def start(self, step: StepInput) -> PendingLogits | None:
        """Run this rank's part of a step. Rank 0 gets its logits, or, when a later stage
        computes them, a receive it may wait on after starting further steps."""
        for send in self._sends:
            send.wait()
        step = self._on_device(step)
        if step.passages_in is not None:
            self.move_kv(step.passages_in)
        shard, groups = self.model.shard, self.groups
        hidden = residual = None
        if not shard.is_first_stage:
            assert groups is not None
            hidden = self._states(step, groups.previous_stage_rank)
            residual = self._states(step, groups.previous_stage_rank)
        hidden, residual = self.model.forward_stage(
            step.input_ids, step.positions, self.kv_caches, step.metadata, hidden, residual
        )
        if step.passages_out is not None:
            self.move_kv(step.passages_out)
        if not shard.is_last_stage:
            assert groups is not None and residual is not None
            pending = self._logits_from_last_stage(step) if groups.rank == 0 else None
            self._sends = [
                groups.send_async(hidden, groups.next_stage_rank),
                groups.send_async(residual, groups.next_stage_rank),
            ]  # NOTE: kept (with their tensors) until they complete, at the next step
            return pending
        sampled = self.model.final_norm(hidden, residual)[step.sample_indices]
        logits = self.model.compute_logits(sampled).float()  # [num_samples, vocab]
        if groups is None or groups.rank == 0:
            return PendingLogits(logits)
        if shard.tp_rank == 0 and not shard.is_first_stage:
            groups.send(logits, 0)
        return None

    def _states(self, step: StepInput, from_rank: int) -> torch.Tensor:
        """A [num_tokens, hidden] tensor from the previous stage."""
        shape = (step.input_ids.shape[0], self.model.config.hidden_size)
        dtype = next(self.model.model.layers.parameters()).dtype
        assert self.groups is not None
        return self.groups.receive(torch.empty(shape, dtype=dtype, device=self.device), from_rank)

    def _logits_from_last_stage(self, step: StepInput) -> PendingLogits:
        """Post the receive of the step's logits now, before this rank sends anything on:
        with several steps in the pipeline, the last stage may send them any time."""
        assert self.groups is not None
        shape = (step.sample_indices.shape[0], self.model.config.vocab_size)
        logits = torch.empty(shape, dtype=torch.float32, device=self.device)
        return PendingLogits(
            logits, self.groups.receive_async(logits, self.groups.last_stage_first_rank)
        )

    def _on_device(self, step: StepInput) -> StepInput:
        if self.device.type == "cpu":
            return step
        move = self._to_device
        meta = step.metadata
        moves = step.passages_in
        return replace(
            step,
            input_ids=move(step.input_ids),
            positions=move(step.positions),
            sample_indices=move(step.sample_indices),
            metadata=replace(
                meta,
                slot_mapping=move(meta.slot_mapping),
                query_start_loc=move(meta.query_start_loc),
                context_lens=move(meta.context_lens),
                block_tables=move(meta.block_tables),
            ),
            passages_in=None if moves is None else self._moves_on_device(moves),
            passages_out=None
            if step.passages_out is None
            else self._moves_on_device(step.passages_out),
        )

    def _moves_on_device(self, moves: KVMoves) -> KVMoves:
        return replace(moves, src=self._to_device(moves.src), dst=self._to_device(moves.dst))

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    def prepare(
        self, scheduled: list[ScheduledSequence]
    ) -> tuple[StepInput, list[ScheduledSequence]]:
        """The step's inputs, and the sequences its logits rows belong to, in order."""
        segments = [(item, start, end) for item in scheduled for start, end in item.runs]
        # NOTE: a segment of one token is a decode whatever its history.
        segments.sort(key=lambda segment: segment[2] - segment[1] > 1)
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        query_start_loc = [0]
        sample_indices: list[int] = []
        sampling: list[ScheduledSequence] = []
        for item, start, end in segments:
            input_ids.extend(item.seq.token_ids[start:end])
            positions.extend(range(start, end))
            slots.extend(self._slots(item.seq.block_table, start, end))
            query_start_loc.append(len(input_ids))
            if item.samples and end == item.seq.num_tokens:
                sample_indices.append(len(input_ids) - 1)
                sampling.append(item)
        query_lens = tuple(end - start for _, start, end in segments)
        context_lens = tuple(end for _, _, end in segments)
        metadata = PagedAttentionMetadata(
            slot_mapping=self._tensor(slots, torch.int64),
            query_start_loc=self._tensor(query_start_loc, torch.int32),
            context_lens=self._tensor(list(context_lens), torch.int32),
            block_tables=self._block_tables([item.seq.block_table for item, _, _ in segments]),
            num_decodes=sum(1 for n in query_lens if n == 1),
            query_lens_host=query_lens,
            context_lens_host=context_lens,
            backend=self.attention_backend,
        )
        step = StepInput(
            input_ids=self._tensor(input_ids, torch.int64),
            positions=self._tensor(positions, torch.int64),
            metadata=metadata,
            sample_indices=self._tensor(sample_indices, torch.int64),
            passages_in=self._passages_in(scheduled),
        )
        return step, sampling

    def _passages_in(self, scheduled: list[ScheduledSequence]) -> KVMoves | None:
        """The step's cached passages, to copy into their sequences' blocks."""
        src: list[int] = []
        dst: list[int] = []
        old: list[int] = []
        new: list[int] = []
        for item in scheduled:
            for copy in item.copies:
                passage, first, num_tokens = copy.passage, copy.first, copy.passage.num_tokens
                src += self._slots(passage.block_ids, first, num_tokens)
                dst += self._slots(item.seq.block_table, copy.copy_start, copy.end)
                old.extend(range(passage.source_start + first, passage.source_start + num_tokens))
                new.extend(range(copy.copy_start, copy.end))
        if not src:
            return None
        return KVMoves(
            self._tensor(src, torch.int64),
            self._tensor(dst, torch.int64),
            self._tensor(old, torch.int64),
            self._tensor(new, torch.int64),
        )

    def passages_out(self, keeps: list[PassageKeep]) -> KVMoves | None:
        """Passages sequences computed, to copy into the cache's own blocks as they are."""
        src: list[int] = []
        dst: list[int] = []
        for keep in keeps:
            num_tokens = keep.passage.num_tokens
            src += self._slots(keep.block_table, keep.start, keep.start + num_tokens)
            dst += self._slots(keep.passage.block_ids, 0, num_tokens)
        if not src:
            return None
        return KVMoves(self._tensor(src, torch.int64), self._tensor(dst, torch.int64))

    def copy_passages_out(self, keeps: list[PassageKeep]) -> None:
        moves = self.passages_out(keeps)
        if moves is not None:
            self.move_kv(moves)

    @torch.inference_mode()
    def move_kv(self, moves: KVMoves) -> None:
        """Copy KV between slots in every layer of this rank, turning keys when asked."""
        src, dst = self._to_device(moves.src), self._to_device(moves.dst)
        rotation = None
        if moves.old_positions is not None and moves.new_positions is not None:
            rotation = self.model.model.rotary.shift(
                moves.old_positions, moves.new_positions, torch.float32
            )
        for keys, values in self.kv_caches:
            key_rows, value_rows = _slot_rows(keys), _slot_rows(values)
            if rotation is None:
                key_rows[dst] = key_rows[src]
            else:
                key_rows[dst] = rotation.rotate_keys(key_rows[src].float()).to(keys.dtype)
            value_rows[dst] = value_rows[src]

    def _slots(self, block_table: Sequence[int], start: int, end: int) -> list[int]:
        """Cache slots of positions [start, end): one run of slots per block, no per-token loop."""
        size = self.block_size
        slots: list[int] = []
        for index in range(start // size, (end - 1) // size + 1):
            base = block_table[index] * size
            slots.extend(
                range(base + max(start - index * size, 0), base + min(end - index * size, size))
            )
        return slots

    def _block_tables(self, tables: list[list[int]]) -> torch.Tensor:
        width = max(len(table) for table in tables)
        rows = [table + [0] * (width - len(table)) for table in tables]
        return self._tensor(rows, torch.int32)

    @staticmethod
    def _tensor(data: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype)  # on the CPU: `run` moves the step


def _slot_rows(cache: torch.Tensor) -> torch.Tensor:
    """A layer's K or V cache seen as one row per slot: [num_blocks * block_size, heads, dim]."""
    return cache.view(-1, *cache.shape[2:])
