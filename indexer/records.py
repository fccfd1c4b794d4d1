"""What the indexer hands back: search hits, document descriptions, ingest reports, the
database's health."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# progress(phase, done, total): phase is "parse", "chunk" or "embed".
Progress = Callable[[str, int, int], object]


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    title: str
    page: int | None
    text: str
    score: float  # what ranked it: fused RRF score, cosine similarity or BM25 score
    metadata: dict[str, Any]
    collection: str
    char_start: int  # offsets of `text` in the document's extracted text
    char_end: int
    dense_score: float | None  # cosine similarity to the query (None in BM25 mode)
    bm25_score: float | None  # None when BM25 did not retrieve this chunk
    relevant: bool  # dense_score reaches the embedder's relevance threshold


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    collection: str
    title: str
    source_name: str
    mime_type: str
    sha256: str
    size_bytes: int
    page_count: int | None
    created_at: datetime
    status: str
    error: str | None
    metadata: dict[str, Any]
    num_chunks: int
    has_file: bool


@dataclass(frozen=True)
class DocumentText:
    """A document's extracted text: what its chunks cite, and what a viewer can show."""

    text: str
    pages: tuple[tuple[int, int], ...]  # [start, end) of page n+1 in `text`; () if unpaged


@dataclass(frozen=True)
class IngestFailure:
    source: str
    error: str
    document_id: int | None = None  # set when the failure is recorded in the database


@dataclass
class IngestReport:
    document_ids: list[int] = field(default_factory=list)  # new and existing, in input order
    new_documents: int = 0
    duplicates: int = 0
    pages: int = 0
    chunks: int = 0
    failures: list[IngestFailure] = field(default_factory=list)
    skipped_unsupported: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatabaseStatus:
    """Whether the library's database answers, for health checks."""

    kind: str  # "sqlite", "postgresql", ...
    error: str | None  # why it cannot be reached; None when it answers


def report_progress(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)
