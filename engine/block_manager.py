"""Paged KV memory with a content-addressed prefix cache.

KV memory is a pool of fixed-size blocks. A sequence owns a block table (the ids of
its blocks, in order), not a contiguous buffer. Every *full* block is keyed by
`hash(parent_key, token_ids, salt)`: the chain makes a key stand for the whole
prefix up to and including that block, so a new sequence can look up its blocks in
order and reuse every hit instead of recomputing it. A partial last block is never
keyed, so it is always private to its sequence.

Freed blocks keep their contents and key and wait in an LRU queue; they are evicted
only when a new block is needed. The passage cache (passage_cache.py) keeps its
passages' KV in blocks of the same pool: they wait in the same queue while no step
reads or writes them, and evicting any one of them drops its passage. This module
imports no torch: it runs in CPU unit tests that assert exact block ids, ref counts
and eviction order.
"""

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TypeAlias

from engine.passage_cache import CachedPassage, passage_key
from engine.sequence import Sequence

BlockHash: TypeAlias = bytes  # 16 bytes naming a full block and everything before it


def hash_block(parent: BlockHash | None, token_ids: tuple[int, ...], salt: str | None) -> BlockHash:
    """The key of a full block: it names the whole prefix ending with this block.

    NOTE: 128-bit BLAKE2b rather than Python's `hash()`: it is stable across
    processes and collisions are negligible. A hit is still checked against
    everything the key stands for (the block's token ids, its parent's key and
    the salt), so even a collision could not serve another prefix's or tenant's KV.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(parent or b"\x00")
    digest.update(array("q", token_ids).tobytes())
    digest.update((salt or "").encode())
    return digest.digest()


@dataclass(slots=True)
class KVBlock:
    """Metadata of one block of the KV pool; its data lives in the model runner's tensors."""

    block_id: int  # index into dimension 0 of every layer's K and V cache tensors
    ref_count: int = 0  # how many block tables hold this block; 0 means it is in the free queue
    block_hash: BlockHash | None = None  # set once the block is full and registered in the cache
    # What the key was made of, compared on every cache hit (None/() while unregistered):
    parent_hash: BlockHash | None = None  # key of the block before it; None for a first block
    token_ids: tuple[int, ...] = ()  # the tokens whose KV it holds
    salt: str | None = None  # the cache namespace of the sequence that computed it
    passage: CachedPassage | None = None  # the cached passage whose KV it holds, if any


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """The leading blocks of a sequence found in the cache, ready to be reused."""

    block_ids: tuple[int, ...] = ()
    block_size: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.block_ids) * self.block_size


@dataclass(slots=True)
class PrefixCacheStats:
    """Counters in tokens, the unit users reason in (Prometheus exports these)."""

    num_query_tokens: int = 0  # prompt tokens looked up in the cache when a sequence was admitted
    num_hit_tokens: int = 0  # of those, how many were served from cache

    @property
    def hit_rate(self) -> float:
        return self.num_hit_tokens / self.num_query_tokens if self.num_query_tokens else 0.0


@dataclass
class BlockManager:
    """Allocates blocks to sequences and shares the blocks of identical prefixes.

    The scheduler uses it in check/act pairs: `can_allocate` then `allocate`.
    """

    num_blocks: int
    block_size: int
    enable_prefix_caching: bool = True
    stats: PrefixCacheStats = field(default_factory=PrefixCacheStats)

    def __post_init__(self) -> None:
        if self.num_blocks < 1 or self.block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.blocks = [KVBlock(block_id) for block_id in range(self.num_blocks)]
        # NOTE: an ordered dict is the LRU queue: O(1) append, pop from the front, and
        # removal from the middle when a cache hit revives a freed block.
        self._free_queue: OrderedDict[int, None] = OrderedDict.fromkeys(range(self.num_blocks))
        self._cached: dict[BlockHash, int] = {}
        self._passages: dict[bytes, CachedPassage] = {}

    # ---- queries -------------------------------------------------------------------

    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be handed out now, counting cached ones no sequence holds."""
        return len(self._free_queue)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free_queue)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    @property
    def num_cached_passages(self) -> int:
        return len(self._passages)

    def free_queue_order(self) -> list[int]:
        """Block ids in eviction order, first evicted first (for tests and debugging)."""
        return list(self._free_queue)

    def match_prefix(self, seq: Sequence) -> PrefixMatch:
        """Find the longest run of the sequence's leading full blocks held in the cache.

        At least one token is always left to compute, since the model must run on the
        last token to produce the next one.
        """
        if not self.enable_prefix_caching:
            return PrefixMatch(block_size=self.block_size)
        max_blocks = (seq.num_tokens - 1) // self.block_size
        block_ids: list[int] = []
        for index, block_hash in enumerate(self._block_hashes(seq, max_blocks)):
            block_id = self._cached.get(block_hash)
            if block_id is None or not self._holds(block_id, seq, index):
                break
            block_ids.append(block_id)
        return PrefixMatch(tuple(block_ids), self.block_size)

    def can_allocate(
        self, seq: Sequence, num_new_tokens: int, prefix: PrefixMatch | None = None
    ) -> bool:
        """Whether `allocate` with the same arguments would succeed."""
        prefix_ids = prefix.block_ids if prefix else ()
        revived = sum(1 for block_id in prefix_ids if self.blocks[block_id].ref_count == 0)
        num_tokens = self._num_tokens_after(seq, num_new_tokens, prefix)
        num_new_blocks = max(
            0, self._num_blocks_for(num_tokens) - len(seq.block_table) - len(prefix_ids)
        )
        return num_new_blocks + revived <= len(self._free_queue)

    def find_passage(self, token_ids: tuple[int, ...], salt: str | None) -> CachedPassage | None:
        """The cached passage with exactly these tokens in this namespace (its KV may
        still be in the making: see `ready`)."""
        passage = self._passages.get(passage_key(token_ids, salt))
        if passage is None or passage.token_ids != token_ids or passage.salt != salt:
            return None
        return passage

    # ---- actions -------------------------------------------------------------------

    def allocate(
        self, seq: Sequence, num_new_tokens: int, prefix: PrefixMatch | None = None
    ) -> None:
        """Give the sequence room for `num_new_tokens` more tokens after its computed ones.

        `prefix` (from `match_prefix`, for a sequence holding no blocks yet) is taken
        over first; the caller then counts its tokens as computed.
        """
        if not self.can_allocate(seq, num_new_tokens, prefix):
            raise RuntimeError("allocate() called without room: check can_allocate() first")
        num_tokens = self._num_tokens_after(seq, num_new_tokens, prefix)
        if prefix is not None:
            self._take_prefix(seq, prefix)
        while len(seq.block_table) < self._num_blocks_for(num_tokens):
            seq.block_table.append(self._pop_free_block())
        self._register_full_blocks(seq, num_tokens)

    def free(self, seq: Sequence) -> None:
        """Release the sequence's blocks; cached ones stay reusable until evicted.

        NOTE: blocks are released tail first, so a sequence's last blocks (the least
        likely to be shared) are evicted before its first ones. Blocks with no key
        hold nothing reusable and go to the front of the queue.
        """
        for block_id in reversed(seq.block_table):
            self._release_block(block_id)
        seq.block_table.clear()
        seq.num_registered_blocks = 0

    def keep_passage(
        self, token_ids: tuple[int, ...], salt: str | None, source_start: int
    ) -> CachedPassage | None:
        """Blocks for a passage's KV, held (ref count 1) until `release_passage` once the
        copy is written; None when it is cached already or free blocks are short.

        NOTE: only free blocks are taken, never a running sequence's: keeping a passage
        is worth an eviction from the cache, not a preemption.
        """
        key = passage_key(token_ids, salt)
        num_blocks = self._num_blocks_for(len(token_ids))
        if key in self._passages or not token_ids or num_blocks > len(self._free_queue):
            return None
        block_ids = tuple(self._pop_free_block() for _ in range(num_blocks))
        passage = CachedPassage(key, token_ids, salt, block_ids, source_start)
        for block_id in block_ids:
            self.blocks[block_id].passage = passage
        self._passages[key] = passage
        return passage

    def hold_passage(self, passage: CachedPassage) -> None:
        """Keep a passage's blocks from eviction while a step reads them."""
        for block_id in passage.block_ids:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self._free_queue[block_id]
            block.ref_count += 1

    def release_passage(self, passage: CachedPassage) -> None:
        """Undo one `hold_passage` (or `keep_passage`): at no holder left, the blocks wait
        in the queue as the most recently used (or first, if the passage was dropped)."""
        for block_id in reversed(passage.block_ids):
            self._release_block(block_id)

    def reset_prefix_cache(self) -> None:
        """Forget every cached key and passage (for example after the weights change)."""
        for block_id in self._cached.values():
            _forget_key(self.blocks[block_id])
        self._cached.clear()
        for passage in list(self._passages.values()):
            self._drop_passage(passage)

    # ---- internals -----------------------------------------------------------------

    def _num_tokens_after(
        self, seq: Sequence, num_new_tokens: int, prefix: PrefixMatch | None
    ) -> int:
        """How many tokens the block table must cover once the allocation is done."""
        num_computed = prefix.num_tokens if prefix is not None else seq.num_computed_tokens
        return num_computed + num_new_tokens

    def _num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _take_prefix(self, seq: Sequence, prefix: PrefixMatch) -> None:
        if seq.block_table:
            raise RuntimeError("a prefix can only be taken by a sequence that holds no blocks")
        for block_id in prefix.block_ids:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self._free_queue[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        seq.num_registered_blocks = len(prefix.block_ids)
        self.stats.num_query_tokens += seq.num_prompt_tokens
        self.stats.num_hit_tokens += prefix.num_tokens

    def _release_block(self, block_id: int) -> None:
        """One holder fewer; with none left the block waits in the free queue, first in
        line when it holds nothing reusable."""
        block = self.blocks[block_id]
        block.ref_count -= 1
        if block.ref_count < 0:
            raise RuntimeError(f"block {block_id} released more often than it was taken")
        if block.ref_count == 0:
            self._free_queue[block_id] = None
            if block.block_hash is None and block.passage is None:
                self._free_queue.move_to_end(block_id, last=False)

    def _pop_free_block(self) -> int:
        block_id, _ = self._free_queue.popitem(last=False)
        block = self.blocks[block_id]
        if block.block_hash is not None:
            del self._cached[block.block_hash]
            _forget_key(block)
        block.ref_count = 1
        if block.passage is not None:
            self._drop_passage(block.passage)
        return block_id

    def _drop_passage(self, passage: CachedPassage) -> None:
        """Forget a passage; its free blocks hold nothing reusable and go first."""
        del self._passages[passage.key]
        for block_id in reversed(passage.block_ids):
            block = self.blocks[block_id]
            block.passage = None
            if block.ref_count == 0:
                self._free_queue.move_to_end(block_id, last=False)

    def _register_full_blocks(self, seq: Sequence, num_tokens: int) -> None:
        """Key the blocks that `num_tokens` fills, so later sequences can find them."""
        if not self.enable_prefix_caching:
            return
        num_full = num_tokens // self.block_size
        hashes = self._block_hashes(seq, num_full)
        for index in range(seq.num_registered_blocks, num_full):
            block = self.blocks[seq.block_table[index]]
            # NOTE: if another block already holds this content (two identical prompts
            # admitted in one step), this one stays unkeyed and is recycled when freed.
            if block.block_hash is None and hashes[index] not in self._cached:
                block.block_hash = hashes[index]
                block.parent_hash = hashes[index - 1] if index else None
                block.token_ids = self._block_tokens(seq, index)
                block.salt = seq.cache_salt
                self._cached[hashes[index]] = block.block_id
        seq.num_registered_blocks = max(seq.num_registered_blocks, num_full)

    def _block_hashes(self, seq: Sequence, num_blocks: int) -> list[BlockHash]:
        """The chained keys of the sequence's first `num_blocks` full blocks (memoised)."""
        hashes = seq.block_hashes
        while len(hashes) < num_blocks:
            parent = hashes[-1] if hashes else None
            tokens = self._block_tokens(seq, len(hashes))
            hashes.append(hash_block(parent, tokens, seq.cache_salt))
        return hashes[:num_blocks]

    def _holds(self, block_id: int, seq: Sequence, index: int) -> bool:
        """Whether a cached block really holds the KV of the sequence's `index`-th block.

        The key alone is not trusted: the block must hold the same tokens, after the
        same parent (whose own hit was checked the same way) and in the same namespace.
        """
        block = self.blocks[block_id]
        parent = seq.block_hashes[index - 1] if index else None
        return (
            block.token_ids == self._block_tokens(seq, index)
            and block.parent_hash == parent
            and block.salt == seq.cache_salt
        )

    def _block_tokens(self, seq: Sequence, index: int) -> tuple[int, ...]:
        start = index * self.block_size
        return tuple(seq.token_ids[start : start + self.block_size])


def _forget_key(block: KVBlock) -> None:
    """Unregister a block: its contents will be overwritten and no longer match the key."""
    block.block_hash = None
    block.parent_hash = None
    block.token_ids = ()
    block.salt = None
