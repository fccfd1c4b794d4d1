"""Block manager: exact block ids, ref counts, eviction order, salt isolation, no leaks."""

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.block_manager import BlockManager, hash_block
from engine.sampling_params import SamplingParams
from engine.sequence import Sequence

BLOCK = 4


def make_seq(tokens: list[int], request_id: str = "r", salt: str | None = None) -> Sequence:
    return Sequence(request_id, list(tokens), len(tokens), SamplingParams(), cache_salt=salt)


def admit(manager: BlockManager, seq: Sequence) -> int:
    """Admit a whole prompt as the scheduler does; returns the number of cached tokens."""
    prefix = manager.match_prefix(seq)
    manager.allocate(seq, seq.num_tokens - prefix.num_tokens, prefix)
    seq.num_computed_tokens = seq.num_tokens
    return prefix.num_tokens


def test_block_manager_module_imports_no_torch() -> None:
    import subprocess

    code = "import engine.block_manager, engine.scheduler, sys; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_hash_chain_depends_on_parent_tokens_and_salt() -> None:
    root = hash_block(None, (1, 2, 3, 4), None)
    assert hash_block(None, (1, 2, 3, 4), None) == root
    assert hash_block(None, (1, 2, 3, 5), None) != root
    assert hash_block(None, (1, 2, 3, 4), "tenant-a") != root
    child = hash_block(root, (5, 6, 7, 8), None)
    other_parent = hash_block(None, (9, 9, 9, 9), None)
    assert hash_block(other_parent, (5, 6, 7, 8), None) != child


def test_allocation_takes_blocks_in_order_and_keys_only_full_ones() -> None:
    manager = BlockManager(num_blocks=8, block_size=BLOCK)
    seq = make_seq(list(range(10)))  # 2 full blocks + 2 tokens
    assert admit(manager, seq) == 0
    assert seq.block_table == [0, 1, 2]
    assert [manager.blocks[i].ref_count for i in range(4)] == [1, 1, 1, 0]
    assert manager.blocks[0].token_ids == (0, 1, 2, 3)
    assert manager.blocks[1].token_ids == (4, 5, 6, 7)
    assert manager.blocks[2].block_hash is None  # the partial last block stays private
    assert manager.num_cached_blocks == 2
    assert manager.num_free_blocks == 5


def test_second_sequence_reuses_shared_prefix_and_owns_its_tail() -> None:
    manager = BlockManager(num_blocks=8, block_size=BLOCK)
    first = make_seq([1, 2, 3, 4, 5, 6, 7, 8, 9], "a")
    admit(manager, first)
    second = make_seq([1, 2, 3, 4, 5, 6, 7, 8, 42, 43], "b")
    assert admit(manager, second) == 8
    assert second.block_table[:2] == first.block_table[:2]
    assert second.block_table[2] not in first.block_table
    assert manager.blocks[first.block_table[0]].ref_count == 2
    assert manager.stats.num_hit_tokens == 8
    assert manager.stats.num_query_tokens == 9 + 10


def test_fully_cached_prompt_still_computes_its_last_token() -> None:
    manager = BlockManager(num_blocks=8, block_size=BLOCK)
    admit(manager, make_seq(list(range(8)), "a"))
    again = make_seq(list(range(8)), "b")
    prefix = manager.match_prefix(again)
    assert prefix.num_tokens == 4  # not 8: the model must run on token 8 to predict token 9


def test_free_keeps_cached_blocks_and_evicts_lru_tail_first() -> None:
    manager = BlockManager(num_blocks=6, block_size=BLOCK)
    seq = make_seq(list(range(10)))
    admit(manager, seq)  # blocks 0, 1 (keyed), 2 (partial)
    manager.free(seq)
    assert seq.block_table == []
    # Unkeyed block 2 goes first; keyed blocks follow, tail (1) before head (0).
    assert manager.free_queue_order() == [2, 3, 4, 5, 1, 0]
    assert manager.num_cached_blocks == 2
    # New allocations use the free blocks first and evict cached ones last, tail first.
    other = make_seq(list(range(100, 120)), "other")  # 5 blocks
    admit(manager, other)
    assert other.block_table == [2, 3, 4, 5, 1]
    assert manager.num_cached_blocks == 1 + 5  # block 0 survived; other's 5 full blocks are keyed
    assert manager.match_prefix(make_seq(list(range(10)), "x")).block_ids == (0,)


def test_cache_hit_revives_a_freed_block_out_of_the_free_queue() -> None:
    manager = BlockManager(num_blocks=4, block_size=BLOCK)
    first = make_seq([1, 2, 3, 4, 5])
    admit(manager, first)
    manager.free(first)
    assert manager.blocks[0].ref_count == 0
    second = make_seq([1, 2, 3, 4, 9], "b")
    assert admit(manager, second) == 4
    assert second.block_table[0] == 0
    assert manager.blocks[0].ref_count == 1
    assert 0 not in manager.free_queue_order()


def test_hit_is_checked_against_token_ids_not_just_the_hash() -> None:
    manager = BlockManager(num_blocks=4, block_size=BLOCK)
    admit(manager, make_seq([1, 2, 3, 4, 5]))
    manager.blocks[0].token_ids = (7, 7, 7, 7)  # simulate a hash collision with other content
    assert manager.match_prefix(make_seq([1, 2, 3, 4, 5], "b")).num_tokens == 0


def collide_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every block key the same: only the checks on a hit stand between tenants."""
    monkeypatch.setattr("engine.block_manager.hash_block", lambda *args: b"\x01" * 16)


def test_a_colliding_key_never_serves_another_tenants_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collide_every_key(monkeypatch)
    manager = BlockManager(num_blocks=8, block_size=BLOCK)
    admit(manager, make_seq([1, 2, 3, 4, 5], "a", salt="tenant-a"))
    other = make_seq([1, 2, 3, 4, 5], "b", salt="tenant-b")  # same tokens, same (forced) key
    assert manager.match_prefix(other).block_ids == ()
    assert admit(manager, other) == 0
    assert other.block_table == [2, 3]  # computed afresh in blocks of its own
    assert manager.match_prefix(make_seq([1, 2, 3, 4, 5], "c", salt="tenant-a")).block_ids == (0,)


def test_a_colliding_key_never_serves_a_block_computed_after_another_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collide_every_key(monkeypatch)
    manager = BlockManager(num_blocks=8, block_size=BLOCK)
    # Block 0 holds (7, 7, 7, 7) at the start of a prompt and owns the only key there is.
    admit(manager, make_seq([7, 7, 7, 7, 1], "a"))
    # The same tokens as a second block, after another first block: same key, same
    # tokens, but its KV must be computed after (7, 7, 7, 7), so block 0 will not do.
    seq = make_seq([7, 7, 7, 7, 7, 7, 7, 7, 2], "b")
    assert manager.match_prefix(seq).block_ids == (0,)  # its first block is a true hit
    assert admit(manager, seq) == 4
    assert seq.block_table == [0, 2, 3]  # block 0 once, then blocks of its own
    assert manager.match_prefix(make_seq([9, 9, 9, 9, 7, 7, 7, 7, 2], "c")).block_ids == ()


def test_salt_isolates_tenants() -> None:
    manager = BlockManager(num_blocks=8, block_size=BLOCK)
    admit(manager, make_seq(list(range(9)), "a", salt="tenant-a"))
    assert manager.match_prefix(make_seq(list(range(9)), "b", salt="tenant-b")).num_tokens == 0
    assert manager.match_prefix(make_seq(list(range(9)), "c", salt=None)).num_tokens == 0
    assert manager.match_prefix(make_seq(list(range(9)), "d", salt="tenant-a")).num_tokens == 8


def test_can_allocate_counts_revived_prefix_blocks() -> None:
    manager = BlockManager(num_blocks=3, block_size=BLOCK)
    admit(manager, make_seq([1, 2, 3, 4, 5, 6, 7, 8, 9]))  # uses all 3 blocks
    assert manager.num_free_blocks == 0
    probe = make_seq([1, 2, 3, 4, 5, 6, 7, 8, 10], "b")
    prefix = manager.match_prefix(probe)
    assert prefix.num_tokens == 8
    assert not manager.can_allocate(probe, 1, prefix)  # needs one new block, none is free


def test_prefix_caching_disabled_never_shares() -> None:
    manager = BlockManager(num_blocks=8, block_size=BLOCK, enable_prefix_caching=False)
    admit(manager, make_seq(list(range(9)), "a"))
    assert manager.match_prefix(make_seq(list(range(9)), "b")).num_tokens == 0
    assert manager.num_cached_blocks == 0


def test_allocate_without_room_is_a_bug() -> None:
    manager = BlockManager(num_blocks=2, block_size=BLOCK)
    with pytest.raises(RuntimeError, match="can_allocate"):
        manager.allocate(make_seq(list(range(12))), 12)


def test_decode_growth_allocates_a_block_only_at_a_boundary() -> None:
    manager = BlockManager(num_blocks=4, block_size=BLOCK)
    seq = make_seq([1, 2, 3])
    admit(manager, seq)
    assert seq.block_table == [0]
    seq.append_token(4)
    manager.allocate(seq, 1)
    seq.num_computed_tokens += 1
    assert seq.block_table == [0]
    assert manager.num_cached_blocks == 1  # block 0 just became full and is now keyed
    seq.append_token(5)
    manager.allocate(seq, 1)
    assert seq.block_table == [0, 1]


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=24), min_size=1, max_size=12),
    free_order=st.randoms(),
)
def test_random_workload_never_leaks_a_block(prompts: list[list[int]], free_order) -> None:
    manager = BlockManager(num_blocks=16, block_size=BLOCK)
    live: list[Sequence] = []
    for index, tokens in enumerate(prompts):
        seq = make_seq(tokens, str(index))
        prefix = manager.match_prefix(seq)
        if manager.can_allocate(seq, seq.num_tokens - prefix.num_tokens, prefix):
            admit(manager, seq)
            live.append(seq)
        elif live:
            manager.free(live.pop(free_order.randrange(len(live))))
        held = {block_id for s in live for block_id in s.block_table}
        assert manager.num_used_blocks == len(held)
        for block in manager.blocks:
            assert block.ref_count == sum(s.block_table.count(block.block_id) for s in live)
    for seq in live:
        manager.free(seq)
    assert manager.num_free_blocks == manager.num_blocks
    assert all(block.ref_count == 0 for block in manager.blocks)
