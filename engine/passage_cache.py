"""Reuse of a retrieved passage's KV wherever it appears in a prompt.

The prefix cache serves a passage only when everything before it is the same. RAG
prompts over one library carry overlapping, not identical, passage sets, so the same
passage keeps turning up after different ones. The prompt builder marks where each
passage's tokens lie; the first time a passage is computed, its KV is copied into
blocks of its own, keyed by its token ids and the cache salt (never its position). A
later prompt that holds the passage anywhere gets that KV copied into its own blocks,
keys rotated to their new positions (`RotaryEmbedding.shift`), and recomputes only the
passage's first tokens (EPIC's fix for the spurious attention sinks a reused chunk's
first tokens become) and everything outside passages, question included.

This module imports no torch: it holds the keys, the entries and the copy plans the
block manager, the scheduler and the model runner share.
"""

import hashlib
from array import array
from dataclasses import dataclass
from typing import TypeAlias

PassageKey: TypeAlias = bytes  # 16 bytes naming a passage's token ids within one salt


def passage_key(token_ids: tuple[int, ...], salt: str | None) -> PassageKey:
    """Key of a passage: its tokens and its tenant, not where it stands in a prompt."""
    digest = hashlib.blake2b(digest_size=16, person=b"pagedrag-passage")
    digest.update(array("q", token_ids).tobytes())
    digest.update((salt or "").encode())
    return digest.digest()


@dataclass(frozen=True, slots=True)
class PassageSpan:
    """Where one passage's tokens lie in a prompt: positions [start, end)."""

    start: int
    end: int

    @property
    def num_tokens(self) -> int:
        return self.end - self.start


@dataclass(slots=True, eq=False)
class CachedPassage:
    """A passage's KV, kept in blocks of the paged pool that no sequence owns.

    The blocks hold its tokens from slot 0 of the first block on; their keys carry the
    rotation of the positions the passage had in the prompt that computed it.
    """

    key: PassageKey
    token_ids: tuple[int, ...]
    salt: str | None
    block_ids: tuple[int, ...]
    source_start: int  # the prompt position of its first token when it was computed
    ready: bool = False  # its KV is written (after the step that copied it out)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True, slots=True)
class PassageCopy:
    """Place a cached passage at `start` in a sequence: tokens [first, n) are copied
    (keys rotated); the `first` before them are computed (or already are, by the prefix
    cache)."""

    passage: CachedPassage
    start: int  # the sequence position of the passage's first token
    first: int  # the passage's first token that is copied rather than computed

    @property
    def copy_start(self) -> int:
        return self.start + self.first

    @property
    def end(self) -> int:
        return self.start + self.passage.num_tokens


@dataclass(frozen=True, slots=True)
class PassageKeep:
    """Copy a passage a sequence computed this step out of its blocks into the cache's."""

    passage: CachedPassage
    block_table: tuple[int, ...]  # the computing sequence's blocks, as of this step
    start: int  # the sequence position of the passage's first token


@dataclass(frozen=True)
class PassageCacheConfig:
    enabled: bool = False
    # Tokens at the head of every reused passage that are computed again in their new
    # context rather than copied (EPIC's k): a reused chunk's first tokens otherwise act
    # as attention sinks for what follows them.
    recompute_tokens: int = 16
    # Steps a waiting request may be held back, waiting for a passage another request is
    # computing, or passed over for requests with more of their prompt cached.
    max_wait_steps: int = 8

    def __post_init__(self) -> None:
        if self.recompute_tokens < 0:
            raise ValueError(f"recompute_tokens must be >= 0, got {self.recompute_tokens}")
        if self.max_wait_steps < 0:
            raise ValueError(f"max_wait_steps must be >= 0, got {self.max_wait_steps}")


@dataclass(slots=True)
class PassageCacheStats:
    """Counters since the engine started; `/metrics` exports them."""

    num_queries: int = 0  # passages looked up when sequences were admitted
    num_hits: int = 0  # of those, found in the cache and placed
    num_reused_tokens: int = 0  # tokens copied from cached passages instead of computed
    num_recomputed_tokens: int = 0  # tokens at the head of placed passages computed again
    num_kept: int = 0  # passages copied into the cache
