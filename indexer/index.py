"""`Index`: documents in, the right passages out; the one door to the indexer's rooms:
`Ingestor` (ingest.py) writes, `Searcher` (search.py) finds, `LiveIndexes` (sync.py)
keeps FAISS and BM25 in line with the database, `Catalog` (catalog.py) reads it, and
`WriterLock` (writer.py) hands out the one `Writer` that every write takes. Opening an
index never waits for another process's writer: a reader skips crash recovery (the
writer did it when it took the lock) and sees only what the database says is ready.

Several servers may share one library on PostgreSQL, each with a data directory of its
own: the database holds documents, chunks and their vectors; each server's FAISS and
BM25 files are a cache that follows it (sync.py), and one writer at a time changes it.

Each collection belongs to a tenant (the server's API keys name them): every call that
reads or changes documents works within one, `DEFAULT_TENANT` unless it says otherwise.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.build_settings import BuildSettings
from indexer.catalog import Catalog
from indexer.chunking import ChunkingConfig
from indexer.deletion import delete_document
from indexer.embedders import Embedder, load_embedder
from indexer.ingest import Ingestor
from indexer.paths import make_data_dir
from indexer.records import (
    DatabaseStatus,
    DocumentInfo,
    DocumentText,
    IngestFailure,
    IngestReport,
    Progress,
    SearchHit,
)
from indexer.search import Searcher
from indexer.sources import expand
from indexer.store import DEFAULT_TENANT, Database
from indexer.sync import LiveIndexes
from indexer.text_input import checked_texts
from indexer.vector_index import VectorIndexConfig
from indexer.writer import Writer, WriterLock


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
        self.writer_lock = WriterLock(self.data_dir / ".writer.lock", self.database.library_lock)
        self.live = LiveIndexes(
            self.data_dir / "indexes",
            self.config.vectors,
            self.catalog,
            self.settings,
            self.writer_lock,
        )
        self.ingestor = Ingestor(self.data_dir / "files", self.catalog, self.settings, self.live)
        self.searcher = Searcher(self.catalog, self.live, self.settings, self.config.candidates)
        with self.writer_lock.try_writing() as writer:
            if writer is not None:  # else another process writes: it recovered at its start
                self.live.recover(writer)

    @property
    def embedder(self) -> Embedder:
        return self.settings.embedder

    @property
    def chunking(self) -> ChunkingConfig:
        return self.settings.chunking

    @property
    def relevance_threshold(self) -> float:
        threshold = self.config.relevance_threshold
        return self.embedder.relevance_threshold if threshold is None else threshold

    def database_status(self) -> DatabaseStatus:
        """The database's kind, and why it cannot be reached if it cannot."""
        return DatabaseStatus(self.database.kind, self.database.error())

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
        tenant: str = DEFAULT_TENANT,
    ) -> list[int]:
        """Ingest files and directories (recursively); the ids of the documents now ready."""
        return self.ingest_files(paths, collection, progress=progress, tenant=tenant).document_ids

    def ingest_files(
        self,
        paths: str | Path | Iterable[str | Path],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> IngestReport:
        """Like `ingest`, with the whole story: duplicates, failures and their reasons."""
        sources = expand([paths] if isinstance(paths, str | Path) else paths)
        report = IngestReport(skipped_unsupported=[str(p) for p in sources.unsupported])
        report.failures.extend(IngestFailure(str(p), message) for p, message in sources.problems)
        with self.writer_lock.writing() as writer:
            collection_id = self._writable_collection(writer, collection, tenant)
            self.ingestor.files(writer, sources, collection_id, report, progress)
        return report

    def ingest_texts(
        self,
        documents: Sequence[dict[str, Any]],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[int]:
        """Ingest `{"text", "title"?, "metadata"?}` dicts; their document ids, in order."""
        items = checked_texts(documents)
        with self.writer_lock.writing() as writer:
            collection_id = self._writable_collection(writer, collection, tenant)
            return self.ingestor.texts(writer, items, collection_id, progress)

    def delete(self, document_id: int, *, tenant: str = DEFAULT_TENANT) -> None:
        """Remove a document, its chunks (database and every index) and its stored file."""
        with self.writer_lock.writing() as writer:
            delete_document(writer, self.catalog, self.live, document_id, tenant)

    def reindex(self, *, progress: Progress | None = None) -> None:
        """Rebuild every index from the database, with this index's embedder.

        After a change of embedder (or of chunk size) documents are chunked again from their
        stored text first, since chunk sizes are counted in the embedder's tokens.
        """
        with self.writer_lock.writing() as writer:
            self.settings.check_chunking(rechunking=True)
            if self.settings.rechunk_needed:
                self.ingestor.rechunk_all(writer, progress)
            for collection_id in self.catalog.collection_ids():
                self.live.rebuild(writer, collection_id, progress)
            self.live.save_dirty(writer)
            self.settings.record()

    def _writable_collection(self, writer: Writer, name: str | None, tenant: str) -> int:
        """Checks before a write, then the collection's id (created on first use), its
        indexes caught up with what other servers changed: this process's readers trust
        them while it writes."""
        self.settings.check_embedder()
        self.settings.check_chunking(rechunking=False)
        collection_id = self.catalog.ensure_collection(writer, name, tenant)
        self.live.get(collection_id)
        return collection_id

    # -- reading ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        collection: str | None = None,
        *,
        document_ids: Sequence[int] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[SearchHit]:
        """The k best chunks of the tenant's collections (or the one named), best first.
        Each hit says whether it is `relevant`."""
        threshold = self.relevance_threshold
        return self.searcher.search(query, k, mode, collection, document_ids, threshold, tenant)

    def documents(
        self, collection: str | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> list[DocumentInfo]:
        """The tenant's documents, or those of one of its collections (IndexerError if it
        does not exist)."""
        return self.catalog.documents(collection, tenant=tenant)

    def document(self, document_id: int, *, tenant: str = DEFAULT_TENANT) -> DocumentInfo:
        return self.catalog.document(document_id, tenant=tenant)

    def document_count(self) -> int:
        """Documents in the whole library, every tenant's."""
        return self.catalog.document_count()

    def collections(self, *, tenant: str = DEFAULT_TENANT) -> list[str]:
        return self.catalog.collections(tenant=tenant)

    def document_text(self, document_id: int, *, tenant: str = DEFAULT_TENANT) -> DocumentText:
        """The text the document's chunks were cut from, with where each page lies in it."""
        return self.catalog.document_text(document_id, tenant=tenant)

    def original_file(self, document_id: int, *, tenant: str = DEFAULT_TENANT) -> Path | None:
        """Where the uploaded file is kept (None for documents given as text)."""
        return self.catalog.original_file(document_id, tenant=tenant)
