"""How many KV blocks the engine holds beyond what its running sequences' tokens need.

The benchmark's target: KV memory is never more than one partial block per sequence
above the unique tokens held. Checked per sequence, so that one sequence's extra
block cannot hide behind another sequence that happens to need no partial block.
"""

from collections import defaultdict
from collections.abc import Iterable

from engine.block_manager import BlockManager
from engine.sequence import Sequence


def excess_blocks(manager: BlockManager, running: Iterable[Sequence]) -> int:
    """Blocks held beyond need; 0 when memory is as tight as the target asks.

    Per sequence, need is its full blocks plus at most one partial block: the ceiling
    of its computed tokens over the block size. A block shared by several sequences is
    needed by each of them, so sharing costs none of them anything. Across sequences,
    two more things are excess: a block in use that no running sequence holds (a
    leak), and a second block holding a prefix another held block already holds (a
    duplicate, which sharing should have avoided).

    Returns:
        The largest per-sequence excess, plus the leaked and the duplicate blocks.
    """
    seqs = list(running)
    block_size = manager.block_size
    per_seq = [len(s.block_table) - -(-s.num_computed_tokens // block_size) for s in seqs]
    held = {block_id for s in seqs for block_id in s.block_table}
    leaked = manager.num_used_blocks - len(held)
    return max(per_seq, default=0) + leaked + _duplicate_blocks(seqs, block_size)


def _duplicate_blocks(seqs: list[Sequence], block_size: int) -> int:
    """Full blocks beyond the first that hold the same prefix (by its chained key).

    NOTE: keys exist only with prefix caching on; without it every sequence computes
    its own copy by design, and this counts nothing.
    """
    holders: dict[bytes, set[int]] = defaultdict(set)
    for seq in seqs:
        num_full = seq.num_computed_tokens // block_size
        for key, block_id in zip(seq.block_hashes[:num_full], seq.block_table, strict=False):
            holders[key].add(block_id)
    return sum(len(block_ids) - 1 for block_ids in holders.values())
