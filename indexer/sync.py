"""`LiveIndexes`: each collection's FAISS and BM25 indexes in memory, kept in line with
the database.

The database is the source of truth; these are caches of it. A writer moves them on
right after each commit (`added`, `removed`) and saves them atomically; a reader that
finds the database's collection generation ahead of its copy (another process or server
wrote, or a crash left the files behind) reloads the saved files and, when it can take
this directory's writer lock without waiting, reconciles them with the database's chunk
ids and vectors. It never waits for a writer: until then the database filters its hits.
Every search reads the generations, so a server follows another's changes at its next
search. `lock` guards the in-memory indexes.
"""

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from indexer.build_settings import BuildSettings
from indexer.catalog import Catalog
from indexer.collection_indexes import CollectionIndexes
from indexer.embedders import embedding_input
from indexer.records import Progress, report_progress
from indexer.store import Chunk, Document, DocumentStatus
from indexer.vector_index import VectorIndexConfig
from indexer.writer import Writer, WriterLock

INTERRUPTED = "ingestion was interrupted; ingest the file again to retry"


class LiveIndexes:
    def __init__(
        self,
        directory: Path,
        vectors: VectorIndexConfig,
        catalog: Catalog,
        settings: BuildSettings,
        writer_lock: WriterLock,
    ) -> None:
        self.directory = directory  # one folder per collection id below it
        self.vectors = vectors
        self.catalog = catalog
        self.settings = settings
        self.writer_lock = writer_lock
        self.lock = threading.RLock()
        self._indexes: dict[int, CollectionIndexes] = {}
        self._dirty: set[int] = set()  # changed in memory since last saved

    def recover(self, writer: Writer) -> None:
        """At open: fail interrupted documents, bring every index up to date.

        Documents are pending only while a writer holds the library's lock: if another
        server holds it now, they may be its work in progress, and are left to it."""
        with self.writer_lock.library.holding(wait=False) as alone:
            if alone:
                self._fail_pending()
        if self.settings.embedder_matches:
            for collection_id in self.catalog.collection_ids():
                self.get(collection_id)
            self.save_dirty(writer)

    def _fail_pending(self) -> None:
        with self.catalog.database.session() as session:
            for document in session.scalars(
                select(Document).where(Document.status == DocumentStatus.PENDING)
            ):
                session.execute(delete(Chunk).where(Chunk.document_id == document.id))
                document.status = DocumentStatus.FAILED
                document.error = INTERRUPTED

    def get(self, collection_id: int, *, reconcile: bool = True) -> CollectionIndexes:
        """This collection's indexes, reloaded if another process moved the database on.

        While another thread of this process writes, its in-memory indexes are current by
        construction (it updates them right after each commit): readers use them as they are.
        """
        another_thread_writes = self.writer_lock.held_by_another_thread
        with self.lock:
            indexes = self._indexes.get(collection_id)
            if indexes is not None and another_thread_writes:
                return indexes
        generation = self.catalog.generation(collection_id)
        with self.lock:
            indexes = self._indexes.get(collection_id)
            if indexes is not None and (indexes.generation == generation or another_thread_writes):
                return indexes
            directory = self._directory_of(collection_id)
            # NOTE: while another process writes, the database runs ahead of the files it
            # saves every SAVE_INTERVAL_S; reloading the same files for every search until
            # then would cost a whole index read per query.
            if (
                indexes is None
                or CollectionIndexes.saved_generation(directory) != indexes.generation
            ):
                indexes = self._load(directory)
                self._indexes[collection_id] = indexes
        if indexes.generation != generation and reconcile:
            self._reconcile_if_possible(collection_id, indexes)
        return indexes

    def added(
        self,
        writer: Writer,
        collection_id: int,
        indexes: CollectionIndexes,
        chunk_ids: Sequence[int],
        texts: Sequence[str],
        vectors: np.ndarray,
        generation: int,
    ) -> None:
        """Follow a commit that added these chunks (the writer, right after it; `indexes`
        taken with `get` before the commit, which moved the generation on)."""
        with self.lock:
            indexes.add(chunk_ids, texts, vectors)
            self._moved_on(collection_id, indexes, generation)

    def removed(
        self,
        writer: Writer,
        collection_id: int,
        indexes: CollectionIndexes,
        chunk_ids: Sequence[int],
        generation: int,
    ) -> None:
        """Follow a commit that deleted these chunks (as `added`)."""
        with self.lock:
            indexes.remove(chunk_ids)
            self._moved_on(collection_id, indexes, generation)

    def rebuild(self, writer: Writer, collection_id: int, progress: Progress | None) -> None:
        """Drop this collection's indexes and build them again from the database."""
        with self.lock:
            self._indexes.pop(collection_id, None)
            directory = self._directory_of(collection_id)
            fresh = CollectionIndexes(directory, self.vectors, library=self._library)
            fresh.embedder = self.settings.embedder.name
            self._indexes[collection_id] = fresh
        self._reconcile(writer, collection_id, fresh, progress)

    def save_dirty(self, writer: Writer) -> None:
        with self.lock:
            for collection_id in sorted(self._dirty):
                self._indexes[collection_id].save()
            self._dirty.clear()

    def _reconcile_if_possible(self, collection_id: int, indexes: CollectionIndexes) -> None:
        if not self.settings.embedder_matches:
            return  # cannot embed with another model; search and ingest will say so
        writer = self.writer_lock.held_by_this_thread
        if writer is not None:
            self._reconcile(writer, collection_id, indexes, None)
            self.save_dirty(writer)
            return
        # Never wait for a writer: its hits are filtered by the database meanwhile.
        with self.writer_lock.try_writing() as writer:
            if writer is not None:
                self._reconcile(writer, collection_id, indexes, None)
                self.save_dirty(writer)

    def _reconcile(
        self,
        writer: Writer,
        collection_id: int,
        indexes: CollectionIndexes,
        progress: Progress | None,
    ) -> None:
        # NOTE: the generation is read first: a commit after it makes the next `get`
        # reconcile again, whereas one read last could claim changes these ids lack.
        generation = self.catalog.generation(collection_id)
        database_ids = self.catalog.ready_chunk_ids(collection_id)

        def load_vectors(chunk_ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
            return self._vectors_of(writer, chunk_ids, progress)

        with self.lock:
            indexes.reconcile(database_ids, self._texts_of, load_vectors)
            self._moved_on(collection_id, indexes, generation)

    def _texts_of(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        return {i: row.text for i, row in self.catalog.chunk_rows(chunk_ids).items()}

    def _vectors_of(
        self, writer: Writer, chunk_ids: Sequence[int], progress: Progress | None
    ) -> tuple[list[int], np.ndarray]:
        """The stored vectors of those chunks still in the database; those stored without
        one (before vectors were kept, or re-chunked since) are embedded and stored now."""
        embedder = self.settings.embedder
        stored = self.catalog.stored_vectors(chunk_ids, embedder.dim)
        rows = self.catalog.chunk_rows([i for i in chunk_ids if i not in stored])
        lacking = sorted(rows)
        if lacking:
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                report_progress(progress, "embed", done, len(lacking))

            texts = [embedding_input(rows[i].title, rows[i].text) for i in lacking]
            embedded = embedder.embed_documents(texts, progress=advance)  # [len(lacking), dim]
            self.catalog.store_vectors(writer, lacking, embedded)
            stored.update(zip(lacking, embedded, strict=True))
        found = [i for i in chunk_ids if i in stored]
        vectors = np.stack([stored[i] for i in found]) if found else np.empty((0, embedder.dim))
        return found, vectors.astype(np.float32)

    def _load(self, directory: Path) -> CollectionIndexes:
        # NOTE: files saved before libraries had ids were SQLite's (PostgreSQL was never
        # shared): kept for a SQLite library, rebuilt for any other.
        trust_unmarked = self.catalog.database.kind == "sqlite"
        return CollectionIndexes.load(
            directory, self.vectors, self._library, trust_unmarked=trust_unmarked
        )

    @property
    def _library(self) -> str:
        return self.catalog.database.library_id

    def _moved_on(self, collection_id: int, indexes: CollectionIndexes, generation: int) -> None:
        indexes.generation = generation
        indexes.embedder = self.settings.embedder.name
        self._dirty.add(collection_id)

    def _directory_of(self, collection_id: int) -> Path:
        return self.directory / str(collection_id)
