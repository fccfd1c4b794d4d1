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
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.models.decoder import DecoderForCausalLM, KVCache
from engine.passage_cache import PassageKeep
from engine.scheduler import ScheduledSequence
from kernels import PagedAttentionMetadata


@dataclass(frozen=True)
class ModelInput:
    input_ids: torch.Tensor  # [num_tokens]
    positions: torch.Tensor  # [num_tokens]
    metadata: PagedAttentionMetadata
    sample_indices: torch.Tensor  # [num_samples]: rows whose hidden state predicts a next token
    sampling: list[ScheduledSequence]  # the sequences those rows belong to, in the same order


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
    ) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = device
        self.attention_backend = attention_backend

    @torch.inference_mode()
    def execute(self, scheduled: list[ScheduledSequence]) -> ModelOutput:
        self.copy_passages_in(scheduled)
        model_input = self.prepare(scheduled)
        hidden = self.model(
            model_input.input_ids, model_input.positions, self.kv_caches, model_input.metadata
        )  # [num_tokens, hidden]
        logits = self.model.compute_logits(hidden[model_input.sample_indices]).float()
        return ModelOutput(model_input.sampling, logits)

    def prepare(self, scheduled: list[ScheduledSequence]) -> ModelInput:
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
        return ModelInput(
            input_ids=self._tensor(input_ids, torch.int64),
            positions=self._tensor(positions, torch.int64),
            metadata=metadata,
            sample_indices=self._tensor(sample_indices, torch.int64),
            sampling=sampling,
        )

    @torch.inference_mode()
    def copy_passages_in(self, scheduled: list[ScheduledSequence]) -> None:
        """Copy the step's cached passages into their sequences' blocks, each key turned
        from the position it was computed at to the one it takes now."""
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
            return
        rotation = self.model.model.rotary.shift(
            torch.tensor(old), torch.tensor(new), torch.float32
        )
        src_slots, dst_slots = self._tensor(src, torch.int64), self._tensor(dst, torch.int64)
        for keys, values in self.kv_caches:
            key_rows, value_rows = _slot_rows(keys), _slot_rows(values)
            moved = rotation.rotate_keys(key_rows[src_slots].float())
            key_rows[dst_slots] = moved.to(keys.dtype)
            value_rows[dst_slots] = value_rows[src_slots]

    @torch.inference_mode()
    def copy_passages_out(self, keeps: list[PassageKeep]) -> None:
        """Copy passages sequences computed into the cache's own blocks, as they are."""
        src: list[int] = []
        dst: list[int] = []
        for keep in keeps:
            num_tokens = keep.passage.num_tokens
            src += self._slots(keep.block_table, keep.start, keep.start + num_tokens)
            dst += self._slots(keep.passage.block_ids, 0, num_tokens)
        if not src:
            return
        src_slots, dst_slots = self._tensor(src, torch.int64), self._tensor(dst, torch.int64)
        for cache in (tensor for layer in self.kv_caches for tensor in layer):
            rows = _slot_rows(cache)
            rows[dst_slots] = rows[src_slots]

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

    def _tensor(self, data: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype).to(self.device, non_blocking=True)


def _slot_rows(cache: torch.Tensor) -> torch.Tensor:
    """A layer's K or V cache seen as one row per slot: [num_blocks * block_size, heads, dim]."""
    return cache.view(-1, *cache.shape[2:])
