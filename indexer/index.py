"""`Index`: documents in, the right passages out. The one door to the indexer.

The rooms behind it, each with one job:

- `ingest.Ingestor`: parse -> chunk -> embed -> commit, as the writer;
- `search.Searcher`: hybrid search, hits read back from the database;
- `sync.LiveIndexes`: the in-memory FAISS and BM25 indexes, kept in line with the
  database (the source of truth) after commits, crashes and other processes' writes;
- `catalog.Catalog`: documents, collections and chunk rows as the database has them;
- `writer.WriterLock`: one writer per data directory, across threads and processes;
- `build_settings.BuildSettings`: the embedder and chunking the index was built with.

Opening an index never waits for another process's writer: a reader then skips crash
recovery (the writer did it when it took the lock) and sees only what the database says
is ready.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from indexer.build_settings import BuildSettings
from indexer.catalog import Catalog, bump_generation, check_storable
from indexer.chunking import ChunkingConfig
from indexer.embedders import Embedder, load_embedder
from indexer.errors import DocumentNotFoundError
from indexer.ingest import Ingestor, checked_texts
from indexer.paths import make_data_dir
from indexer.records import (
    DocumentInfo,
    DocumentText,
    IngestFailure,
    IngestReport,
    Progress,
    SearchHit,
)
from indexer.search import Searcher
from indexer.sources import expand
from indexer.store import Chunk, Database, Document
from indexer.sync import LiveIndexes
from indexer.vector_index import VectorIndexConfig
from indexer.writer import WriterLock


@dataclass(frozen=True)
class IndexConfig:
    # None: the chunking the index was built with (remembered at its first ingest), else
    # the default; another value is refused by ingest and applied by `reindex`.
    chunking: ChunkingConfig | None = None
    vectors: VectorIndexConfig = field(default_factory=VectorIndexConfig)
    relevance_threshold: float | None = None  # None: the embedder's own
    candidates: int = 100  # fetched from each retriever before fusion


class Index:
    def __init__(
        self,
        data_dir: str | Path,
        embedder: str | Embedder | None = None,
        *,
        database_url: str | None = None,
        config: IndexConfig | None = None,
    ) -> None:
        self.data_dir = make_data_dir(Path(data_dir).expanduser())
        self.config = config or IndexConfig()
        self.database = (
            Database(database_url) if database_url else Database.sqlite_in(self.data_dir)
        )
        if embedder is None or isinstance(embedder, str):
            embedder = load_embedder(embedder or self.database.get_setting("embedder"))
        self.settings = BuildSettings(self.database, embedder, self.config.chunking)
        self.catalog = Catalog(self.database, self.data_dir / "files")
        self.writer = WriterLock(self.data_dir / ".writer.lock")
        self.live = LiveIndexes(
            self.data_dir / "indexes", self.config.vectors, self.catalog, self.settings, self.writer
        )
        self.ingestor = Ingestor(self.data_dir / "files", self.catalog, self.settings, self.live)
        self.searcher = Searcher(self.catalog, self.live, self.settings, self.config.candidates)
        with self.writer.writing(wait=False) as writing:
            if writing:  # else another process writes: it recovered when it took the lock
                self.live.recover()

    @property
    def embedder(self) -> Embedder:
        return self.settings.embedder

    @property
    def chunking(self) -> ChunkingConfig:
        return self.settings.chunking

    @property
    def built_with(self) -> str | None:
        """The embedder the index was built with; None while it is empty."""
        return self.settings.built_with

    @property
    def relevance_threshold(self) -> float:
        threshold = self.config.relevance_threshold
        return self.embedder.relevance_threshold if threshold is None else threshold

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[int]:
        """Ingest files and directories (recursively); the ids of the documents now ready."""
        return self.ingest_files(paths, collection, progress=progress).document_ids

    def ingest_files(
        self,
        paths: str | Path | Iterable[str | Path],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Like `ingest`, with the whole story: duplicates, failures and their reasons."""
        sources = expand([paths] if isinstance(paths, str | Path) else paths)
        report = IngestReport(skipped_unsupported=[str(p) for p in sources.unsupported])
        report.failures.extend(IngestFailure(str(p), message) for p, message in sources.problems)
        with self.writer.writing():
            collection_id = self._writable_collection(collection)
            self.ingestor.files(sources, collection_id, report, progress)
        return report

    def ingest_texts(
        self,
        documents: Sequence[dict[str, Any]],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[int]:
        """Ingest `{"text", "title"?, "metadata"?}` dicts; their document ids, in order."""
        items = checked_texts(documents)
        with self.writer.writing():
            collection_id = self._writable_collection(collection)
            return self.ingestor.texts(items, collection_id, progress)

    def delete(self, document_id: int) -> None:
        """Remove a document, its chunks (database and every index) and its stored file."""
        check_storable(document_id)
        with self.writer.writing():
            with self.database.session() as session:
                document = session.get(Document, document_id)
                if document is None:
                    raise DocumentNotFoundError(f"no document with id {document_id}")
                collection_id, stored = document.collection_id, document.stored_file
                chunk_ids = list(
                    session.scalars(select(Chunk.id).where(Chunk.document_id == document_id))
                )
                indexes = self.live.get(collection_id, reconcile=False)
                session.execute(delete(Chunk).where(Chunk.document_id == document_id))
                session.delete(document)
                generation = bump_generation(session, collection_id)
            self.live.removed(collection_id, indexes, chunk_ids, generation)
            self.live.save_dirty()
            if stored is not None:
                self._remove_file_if_unused(stored)

    def reindex(self, *, progress: Progress | None = None) -> None:
        """Rebuild every index from the database, with this index's embedder.

        After a change of embedder (or of chunk size) documents are chunked again from their
        stored text first, since chunk sizes are counted in the embedder's tokens.
        """
        with self.writer.writing():
            self.settings.check_chunking(rechunking=True)
            if self.settings.rechunk_needed:
                self.ingestor.rechunk_all(progress)
            for collection_id in self.catalog.collection_ids():
                self.live.rebuild(collection_id, progress)
            self.live.save_dirty()
            self.settings.record()

    def _writable_collection(self, name: str | None) -> int:
        """Checks before a write, then the collection's id (created on first use)."""
        self.settings.check_embedder()
        self.settings.check_chunking(rechunking=False)
        return self.catalog.collection_id(name, create=True)

    def _remove_file_if_unused(self, stored: str) -> None:
        with self.database.session() as session:
            still_used = session.scalar(
                select(func.count()).select_from(Document).where(Document.stored_file == stored)
            )
        if not still_used:
            (self.catalog.files_dir / stored).unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        collection: str | None = None,
        *,
        document_ids: Sequence[int] | None = None,
    ) -> list[SearchHit]:
        """The k best chunks, best first. Each hit says whether it is `relevant`."""
        threshold = self.relevance_threshold
        return self.searcher.search(query, k, mode, collection, document_ids, threshold)

    def documents(self, collection: str | None = None) -> list[DocumentInfo]:
        """Every document, or those of one collection (IndexerError if it does not exist)."""
        return self.catalog.documents(collection)

    def document(self, document_id: int) -> DocumentInfo:
        return self.catalog.document(document_id)

    def collections(self) -> list[str]:
        return self.catalog.collections()

    def document_text(self, document_id: int) -> DocumentText:
        """The text the document's chunks were cut from, with where each page lies in it."""
        return self.catalog.document_text(document_id)

    def original_file(self, document_id: int) -> Path | None:
        """Where the uploaded file is kept (None for documents given as text)."""
        return self.catalog.original_file(document_id)
