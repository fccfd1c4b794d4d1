"""`BuildSettings`: the embedder and chunking an index was built with, and their checks.

Vectors from two embedders cannot share an index, and chunk sizes are counted in the
embedder's tokens, so both are recorded at the first ingest; another value is refused
until `reindex` rebuilds everything with it.
"""

import json

from indexer.chunking import ChunkingConfig
from indexer.embedders import Embedder
from indexer.errors import EmbedderMismatchError, IndexerError
from indexer.store import Database


class BuildSettings:
    def __init__(
        self, database: Database, embedder: Embedder, chunking: ChunkingConfig | None
    ) -> None:
        self.database = database
        self.embedder = embedder
        self.built_with: str | None = database.get_setting("embedder")  # None: empty index
        self.chunking = chunking or _stored_chunking(database) or ChunkingConfig()

    @property
    def embedder_matches(self) -> bool:
        """This process can embed what the index holds (or nothing was embedded yet)."""
        return self.built_with in (None, self.embedder.name)

    def check_embedder(self) -> None:
        """Record the embedder at the first write; refuse another one later."""
        stored = self.database.get_setting("embedder")
        if stored is None:
            self.record()
        elif stored != self.embedder.name:
            raise EmbedderMismatchError(
                f"this index was built with the embedder {stored!r}, not {self.embedder.name!r}; "
                f"open it with {stored!r}, or re-embed everything with "
                f"`pagedrag reindex --embedder {self.embedder.name}` (Index.reindex())"
            )

    def check_chunking(self, *, rechunking: bool) -> None:
        """Refuse chunks the embedder would cut short, and (unless re-chunking everything)
        a chunk size other than the one the index was built with."""
        size, readable = self.chunking.max_tokens, self.embedder.max_tokens
        if size is not None and size > readable:
            raise IndexerError(
                f"chunks of {size} tokens are longer than the embedder {self.embedder.name!r} "
                f"reads ({readable} tokens): the rest of every chunk would be ignored; "
                f"use a chunk size of at most {readable} tokens"
            )
        stored = _stored_chunking(self.database)
        if not rechunking and stored is not None and stored != self.chunking:
            raise IndexerError(
                f"this index was chunked with {_describe(stored)}, not {_describe(self.chunking)}; "
                "ingest with its setting (leave the chunk options out), or re-chunk everything "
                "with `pagedrag reindex --chunk-tokens N --chunk-overlap M` (Index.reindex())"
            )

    @property
    def rechunk_needed(self) -> bool:
        """The stored chunks were cut for another embedder or another chunk size."""
        return self.database.get_setting(
            "embedder"
        ) != self.embedder.name or self.database.get_setting("chunking") != _chunking_json(
            self.chunking
        )

    def record(self) -> None:
        """This process's embedder and chunking are now what the index is built with."""
        self.database.set_setting("embedder", self.embedder.name)
        self.database.set_setting("chunking", _chunking_json(self.chunking))
        self.built_with = self.embedder.name


def _chunking_json(chunking: ChunkingConfig) -> str:
    settings = {"max_tokens": chunking.max_tokens, "overlap_tokens": chunking.overlap_tokens}
    return json.dumps(settings)


def _stored_chunking(database: Database) -> ChunkingConfig | None:
    stored = database.get_setting("chunking")
    if stored is None:
        return None
    try:
        return ChunkingConfig(**json.loads(stored))
    except (TypeError, ValueError):
        return None  # unreadable: re-chunking with the configured setting repairs it


def _describe(chunking: ChunkingConfig) -> str:
    if chunking.max_tokens is None:
        return "one chunk per page or text"
    return f"{chunking.max_tokens}-token chunks overlapping by {chunking.overlap_tokens}"
