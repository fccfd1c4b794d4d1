"""Deleting a document: its row, its chunks (database and live indexes) and its file."""

from sqlalchemy import delete, func, select

from indexer.catalog import Catalog, bump_generation, owned_document
from indexer.store import Chunk, Document
from indexer.sync import LiveIndexes
from indexer.writer import Writer


def delete_document(
    writer: Writer, catalog: Catalog, live: LiveIndexes, document_id: int, tenant: str
) -> None:
    """One transaction for the rows; the live indexes follow it; the stored file goes last,
    unless another document (the same file in another collection) still uses it."""
    with catalog.database.session() as session:
        collection_id = owned_document(session, document_id, tenant).collection_id
    # NOTE: caught up first with what other servers changed: the commit below moves the
    # indexes to the next generation, which must then hold everything before it.
    indexes = live.get(collection_id)
    with catalog.database.session() as session:
        document = owned_document(session, document_id, tenant)
        stored = document.stored_file
        chunk_ids = list(session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)))
        session.execute(delete(Chunk).where(Chunk.document_id == document_id))
        session.delete(document)
        generation = bump_generation(writer, session, collection_id)
    live.removed(writer, collection_id, indexes, chunk_ids, generation)
    live.save_dirty(writer)
    if stored is None:
        return
    with catalog.database.session() as session:
        still_used = session.scalar(
            select(func.count()).select_from(Document).where(Document.stored_file == stored)
        )
    if not still_used:
        (catalog.files_dir / stored).unlink(missing_ok=True)
