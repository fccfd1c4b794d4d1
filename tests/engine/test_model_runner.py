"""The runner's flattened batch: exact positions, slots, offsets and block tables."""

import torch

from engine.model_runner import ModelRunner
from engine.sampling_params import SamplingParams
from engine.scheduler import ScheduledSequence
from engine.sequence import Sequence

BLOCK = 4


def seq(request_id: str, num_tokens: int, block_table: list[int]) -> Sequence:
    s = Sequence(request_id, list(range(100, 100 + num_tokens)), num_tokens, SamplingParams())
    s.block_table = block_table
    return s


def test_prepare_flattens_decodes_first_then_prefill_chunks() -> None:
    runner = ModelRunner(model=None, kv_caches=[], block_size=BLOCK, device=torch.device("cpu"))  # type: ignore[arg-type]
    chunk = seq("chunk", 10, [7, 2, 9])  # tokens 3..8 computed now, behind 3 cached ones
    decode = seq("decode", 6, [5, 1])  # its 6th token is new
    model_input, sampling = runner.prepare(
        [ScheduledSequence(chunk, 3, 6), ScheduledSequence(decode, 5, 1)]
    )
    assert model_input.input_ids.tolist() == [105, 103, 104, 105, 106, 107, 108]
    assert model_input.positions.tolist() == [5, 3, 4, 5, 6, 7, 8]
    # position p lives in block_table[p // 4] at offset p % 4
    assert model_input.metadata.slot_mapping.tolist() == [
        1 * 4 + 1,
        7 * 4 + 3, 2 * 4 + 0, 2 * 4 + 1, 2 * 4 + 2, 2 * 4 + 3, 9 * 4 + 0,
    ]  # fmt: skip
    metadata = model_input.metadata
    assert metadata.num_decodes == 1
    assert metadata.query_start_loc.tolist() == [0, 1, 7]
    assert metadata.context_lens.tolist() == [6, 9]
    assert metadata.block_tables.tolist() == [[5, 1, 0], [7, 2, 9]]
    # Only the decode reaches its last token; the chunk stops short of token 10.
    assert model_input.sample_indices.tolist() == [0]
    assert [item.seq.request_id for item in sampling] == ["decode"]
    assert model_input.passages_in is None
