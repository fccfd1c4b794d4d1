"""`LiveIndexes`: each collection's FAISS and BM25 indexes in memory, kept in line with
the database.

The database is the source of truth; these are caches of it. A writer moves them on
right after each commit (`added`, `removed`) and saves them atomically; a reader that
finds the database's collection generation ahead of its copy (another process wrote, or
a crash left the files behind) reloads the saved files and, when it can take the writer
lock without waiting, reconciles them with the database's chunk ids. It never waits for a
writer: until then the database filters its hits. `lock` guards the in-memory indexes.
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
        """At open: fail interrupted documents, bring every index up to date."""
        with self.catalog.database.session() as session:
            for document in session.scalars(
                select(Document).where(Document.status == DocumentStatus.PENDING)
            ):
                session.execute(delete(Chunk).where(Chunk.document_id == document.id))
                document.status = DocumentStatus.FAILED
                document.error = INTERRUPTED
        if self.settings.embedder_matches:
            for collection_id in self.catalog.collection_ids():
                self.get(collection_id)
            self.save_dirty(writer)

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
                indexes = CollectionIndexes.load(directory, self.vectors)
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
            fresh = CollectionIndexes(self._directory_of(collection_id), self.vectors)
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
        generation = self.catalog.generation(collection_id)
        database_ids = self.catalog.ready_chunk_ids(collection_id)
        embedder = self.settings.embedder

        def embed(texts: Sequence[str]) -> np.ndarray:
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                report_progress(progress, "embed", done, len(texts))

            return embedder.embed_documents(texts, progress=advance)

        with self.lock:
            indexes.reconcile(database_ids, self._texts_of, embed)
            self._moved_on(collection_id, indexes, generation)

    def _texts_of(self, chunk_ids: Sequence[int]) -> tuple[list[str], list[str]]:
        """(texts to index, texts to embed) of these chunks."""
        rows = self.catalog.chunk_rows(chunk_ids)
        texts = [rows[i].text for i in chunk_ids]
        return texts, [embedding_input(rows[i].title, rows[i].text) for i in chunk_ids]

    def _moved_on(self, collection_id: int, indexes: CollectionIndexes, generation: int) -> None:
        indexes.generation = generation
        indexes.embedder = self.settings.embedder.name
        self._dirty.add(collection_id)

    def _directory_of(self, collection_id: int) -> Path:
        return self.directory / str(collection_id)
