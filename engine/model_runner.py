"""Turns one scheduled step into tensors, runs the model, and returns next-token logits.

The batch is flattened with no padding: the new tokens of every sequence are
concatenated, decodes first (so the attention backend can batch them), then prefill
chunks. Each token gets its position and the cache slot its KV is written to; each
sequence gets its block table and context length.
"""

from dataclasses import dataclass

import torch

from engine.models.decoder import DecoderForCausalLM, KVCache
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
        model_input = self.prepare(scheduled)
        hidden = self.model(
            model_input.input_ids, model_input.positions, self.kv_caches, model_input.metadata
        )  # [num_tokens, hidden]
        logits = self.model.compute_logits(hidden[model_input.sample_indices]).float()
        return ModelOutput(model_input.sampling, logits)

    def prepare(self, scheduled: list[ScheduledSequence]) -> ModelInput:
        # NOTE: a sequence with one new token is a decode whatever its history.
        batch = sorted(scheduled, key=lambda item: item.num_new_tokens > 1)
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        query_start_loc = [0]
        sample_indices: list[int] = []
        for item in batch:
            end = item.start + item.num_new_tokens
            input_ids.extend(item.seq.token_ids[item.start : end])
            positions.extend(range(item.start, end))
            slots.extend(self._slots(item.seq.block_table, item.start, end))
            query_start_loc.append(len(input_ids))
            if item.samples:
                sample_indices.append(len(input_ids) - 1)
        query_lens = tuple(item.num_new_tokens for item in batch)
        context_lens = tuple(item.start + item.num_new_tokens for item in batch)
        metadata = PagedAttentionMetadata(
            slot_mapping=self._tensor(slots, torch.int64),
            query_start_loc=self._tensor(query_start_loc, torch.int32),
            context_lens=self._tensor(list(context_lens), torch.int32),
            block_tables=self._block_tables(batch),
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
            sampling=[item for item in batch if item.samples],
        )

    def _slots(self, block_table: list[int], start: int, end: int) -> list[int]:
        """Cache slots of positions [start, end): one run of slots per block, no per-token loop."""
        size = self.block_size
        slots: list[int] = []
        for index in range(start // size, (end - 1) // size + 1):
            base = block_table[index] * size
            slots.extend(
                range(base + max(start - index * size, 0), base + min(end - index * size, size))
            )
        return slots

    def _block_tables(self, batch: list[ScheduledSequence]) -> torch.Tensor:
        width = max(len(item.seq.block_table) for item in batch)
        rows = [item.seq.block_table + [0] * (width - len(item.seq.block_table)) for item in batch]
        return self._tensor(rows, torch.int32)

    def _tensor(self, data: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype).to(self.device, non_blocking=True)
