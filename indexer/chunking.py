"""Token-aware chunking that ends chunks at paragraph and sentence ends where it can.

The text is cut into pieces at every boundary, each boundary ranked: paragraph (blank
line) > sentence (. ! ? and Chinese 。！？) > clause or line (, ; : ，、；： and line
breaks) > word. Pieces are counted with the embedder's own tokenizer and packed greedily;
when the next piece does not fit, the chunk ends at the strongest boundary in its second
half, and the next chunk starts up to `overlap_tokens` earlier, again at the strongest
boundary available. Chinese words have no spaces, so a piece is only ever split between
characters when one sentence alone exceeds the budget. Chunks never cross pages, so each
one cites exactly one page.

`max_tokens=None` does not split at all: one chunk per page (or per text), and the
embedder reads only its first tokens, as BEIR embeds its corpora. That setting exists to
reproduce published figures; it hides the rest of a long page from dense search.
"""

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.scripts import CJK
from indexer.parsers.document import ParsedDocument

CountTokens = Callable[[Sequence[str]], list[int]]

PARAGRAPH, SENTENCE, CLAUSE, WORD = 3, 2, 1, 0
_BOUNDARIES = re.compile(
    r"""
    (?P<paragraph>\n[ \t]*\n\s*)
    | (?P<sentence>(?<=[.!?])["')\]”’]*\s+|[。！？][”’」』）)]*\s*)
    | (?P<clause>\n\s*|(?<=[,;:])\s+|[，、；：]\s*)
    """,
    re.VERBOSE,
)
_WORDS = re.compile(rf"[{CJK}]\s*|[^\s{CJK}]+\s*|\s+")
_STRENGTH = {"paragraph": PARAGRAPH, "sentence": SENTENCE, "clause": CLAUSE}


@dataclass(frozen=True)
class ChunkingConfig:
    # Tokens of the embedder's tokenizer per chunk; at most what the embedder reads
    # (checked by `Index`). None: one chunk per page or text, truncated by the embedder.
    max_tokens: int | None = 200
    overlap_tokens: int = 40  # repeated from the end of the previous chunk

    def __post_init__(self) -> None:
        if self.max_tokens is None:
            if self.overlap_tokens:
                raise ValueError("chunk overlap needs a chunk size; use 0 with max_tokens=None")
            return
        if self.max_tokens < 16:
            raise ValueError(f"chunk size must be at least 16 tokens, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError(
                "chunk overlap must be between 0 and half the chunk size, "
                f"got {self.overlap_tokens}"
            )

    @classmethod
    def whole(cls) -> "ChunkingConfig":
        """No splitting: one chunk per page or text (BEIR's setting)."""
        return cls(max_tokens=None, overlap_tokens=0)


@dataclass(frozen=True)
class TextChunk:
    text: str
    start: int  # character offsets into the document's text
    end: int
    page: int | None
    token_count: int


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int
    strength: int  # of the boundary just before this piece


@dataclass(frozen=True)
class Region:
    """A span of the text that no chunk may cross: a page, or the whole document."""

    start: int
    end: int
    page: int | None = None


def chunk_text(
    text: str, regions: Sequence[Region], count_tokens: CountTokens, config: ChunkingConfig
) -> list[TextChunk]:
    spans: list[tuple[int, int, int | None]] = []
    for region in regions:
        if config.max_tokens is None:
            spans.append((region.start, region.end, region.page))
            continue
        pieces = _pieces(text, region.start, region.end, count_tokens, config.max_tokens)
        packed = _pack(pieces, config.max_tokens, config.overlap_tokens)
        spans.extend((start, end, region.page) for start, end in packed)
    stripped = [_strip(text, start, end) for start, end, _ in spans]
    kept = [(s, e, page) for (s, e), (_, _, page) in zip(stripped, spans, strict=True) if e > s]
    counts = count_tokens([text[s:e] for s, e, _ in kept])
    return [
        TextChunk(text[s:e], s, e, page, n) for (s, e, page), n in zip(kept, counts, strict=True)
    ]


def _pieces(
    text: str, start: int, end: int, count_tokens: CountTokens, max_tokens: int
) -> list[_Piece]:
    bounds: list[tuple[int, int]] = [(start, PARAGRAPH)]
    for match in _BOUNDARIES.finditer(text, start, end):
        if match.end() < end:
            bounds.append((match.end(), _STRENGTH[match.lastgroup or "clause"]))
    edges = [*bounds, (end, PARAGRAPH)]
    raw = [(a, b, strength) for (a, strength), (b, _) in itertools.pairwise(edges)]
    raw = [(a, b, strength) for a, b, strength in raw if b > a]
    counts = count_tokens([text[a:b] for a, b, _ in raw])
    pieces: list[_Piece] = []
    for (a, b, strength), tokens in zip(raw, counts, strict=True):
        if tokens <= max_tokens:
            pieces.append(_Piece(a, b, tokens, strength))
        else:
            pieces.extend(_words(text, a, b, strength, count_tokens))
    return pieces


def _words(
    text: str, start: int, end: int, strength: int, count_tokens: CountTokens
) -> list[_Piece]:
    """A piece too long for one chunk, cut between words (or Chinese characters)."""
    spans = [match.span() for match in _WORDS.finditer(text, start, end)]
    counts = count_tokens([text[a:b] for a, b in spans])
    return [
        _Piece(a, b, max(tokens, 1), strength if i == 0 else WORD)
        for i, ((a, b), tokens) in enumerate(zip(spans, counts, strict=True))
    ]


def _pack(pieces: list[_Piece], max_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    chunks: list[tuple[int, int]] = []
    first = 0
    while first < len(pieces):
        total, stop = 0, first
        while stop < len(pieces) and total + pieces[stop].tokens <= max_tokens:
            total += pieces[stop].tokens
            stop += 1
        if stop == len(pieces):
            chunks.append((pieces[first].start, pieces[-1].end))
            break
        stop = max(stop, first + 1)  # a single over-long word still makes progress
        cut = _best_cut(pieces, first, stop, max_tokens // 2)
        chunks.append((pieces[first].start, pieces[cut - 1].end))
        first = _overlap_start(pieces, first, cut, overlap_tokens)
    return chunks


def _best_cut(pieces: list[_Piece], first: int, stop: int, min_tokens: int) -> int:
    """The strongest boundary among those leaving at least `min_tokens` in the chunk."""
    best, best_strength, total = stop, -1, 0
    for index in range(first, stop):
        total += pieces[index].tokens
        boundary = index + 1
        strength = pieces[boundary].strength if boundary < len(pieces) else PARAGRAPH
        if total >= min_tokens and strength >= best_strength:
            best, best_strength = boundary, strength
    return best


def _overlap_start(pieces: list[_Piece], first: int, cut: int, overlap_tokens: int) -> int:
    """Where the next chunk starts: up to `overlap_tokens` back, at the strongest boundary."""
    best, best_strength, total = cut, -1, 0
    for index in range(cut - 1, first, -1):
        total += pieces[index].tokens
        if total > overlap_tokens:
            break
        if pieces[index].strength > best_strength:
            best, best_strength = index, pieces[index].strength
    return best


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk_document(
    parsed: ParsedDocument, count_tokens: CountTokens, config: ChunkingConfig
) -> list[TextChunk]:
    """A parsed document's chunks: each page on its own, or the whole text if unpaged."""
    if parsed.pages:
        regions = [Region(p.start, p.end, p.number) for p in parsed.pages if p.end > p.start]
    else:
        regions = [Region(0, len(parsed.text))]
    return chunk_text(parsed.text, regions, count_tokens, config)
