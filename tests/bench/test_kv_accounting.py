"""The benchmark's excess-KV check: per sequence, so no extra block hides behind another."""

from bench.kv_accounting import excess_blocks
from engine.block_manager import BlockManager
from engine.sampling_params import SamplingParams
from engine.sequence import Sequence

BLOCK = 4


def admitted(manager: BlockManager, tokens: list[int], request_id: str) -> Sequence:
    seq = Sequence(request_id, list(tokens), len(tokens), SamplingParams())
    prefix = manager.match_prefix(seq)
    manager.allocate(seq, seq.num_tokens - prefix.num_tokens, prefix)
    seq.num_computed_tokens = seq.num_tokens
    return seq


def test_shared_prefixes_and_partial_blocks_are_not_excess() -> None:
    manager = BlockManager(num_blocks=16, block_size=BLOCK)
    shared = list(range(8))
    a = admitted(manager, [*shared, 100], "a")  # 2 shared full blocks + 1 partial
    b = admitted(manager, [*shared, 200, 201], "b")
    c = admitted(manager, [9, 9, 9, 9], "c")  # exactly one full block, no partial
    assert a.block_table[:2] == b.block_table[:2]
    assert excess_blocks(manager, [a, b, c]) == 0


def test_one_extra_block_shows_even_where_another_sequence_has_no_partial() -> None:
    manager = BlockManager(num_blocks=16, block_size=BLOCK)
    full = admitted(manager, list(range(8)), "full")  # 2 full blocks: no partial at all
    over = admitted(manager, [50, 51, 52, 53, 54], "over")
    over.block_table.append(manager._pop_free_block())  # one block more than it needs
    # A sum over sequences (used - unique full - one partial each) reads 0 here.
    assert manager.num_used_blocks - 3 - 2 == 0
    assert excess_blocks(manager, [full, over]) == 1


def test_leaked_and_duplicate_blocks_are_excess() -> None:
    manager = BlockManager(num_blocks=16, block_size=BLOCK)
    a = admitted(manager, [1, 2, 3, 4, 5], "a")
    leaked = admitted(manager, [7, 7], "gone")
    assert excess_blocks(manager, [a]) == 1  # "gone" still holds a block no one runs
    manager.free(leaked)
    twin = Sequence("twin", [1, 2, 3, 4, 6], 5, SamplingParams())
    manager.allocate(twin, 5)  # computed afresh instead of sharing a's first block
    twin.num_computed_tokens = 5
    assert twin.block_table[0] != a.block_table[0]
    assert excess_blocks(manager, [a, twin]) == 1
