"""The per-step description of a flattened batch that every attention backend reads."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PagedAttentionMetadata:
    """Where each new token's KV goes and which cached KV each sequence attends to.

    The batch is flattened: the new tokens of all sequences are concatenated, decodes
    (one new token each) first, then prefill chunks. Built by the model runner every
    step and passed down to each attention call; nothing is kept between steps.
    """

    slot_mapping: (
        torch.Tensor
    )  # [num_tokens] int64: block_id * block_size + offset of each new token
    query_start_loc: (
        torch.Tensor
    )  # [num_seqs + 1] int32: sequence i's tokens are [loc[i], loc[i+1])
    context_lens: torch.Tensor  # [num_seqs] int32: cached tokens plus new ones, per sequence
    block_tables: torch.Tensor  # [num_seqs, max_num_blocks] int32, padded with 0
    num_decodes: int  # the first num_decodes sequences have exactly one new token
    query_lens_host: tuple[int, ...]  # host copies of the lengths, for loops without device syncs
    context_lens_host: tuple[int, ...]
    backend: str | None = None  # the attention backend forced by name; None: by device

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens_host)

    @property
    def max_context_len(self) -> int:
        return max(self.context_lens_host, default=0)
