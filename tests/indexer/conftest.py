"""Index fixtures on the real default embedder (all-MiniLM-L6-v2, from its PyPI package).

Every test that opens its library through `index` or `open_index` runs twice: on the data
directory's SQLite, and on a fresh database of a real PostgreSQL server (tests/postgres.py).
"""

import functools
from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import select

from indexer import Index
from indexer.store import Chunk, Document, DocumentStatus

FACTS = [
    {"title": "Paris", "text": "Paris is the capital of France. The Eiffel Tower stands there."},
    {"title": "Cats", "text": "Cats are small domesticated carnivorous mammals that often purr."},
    {"title": "Photosynthesis", "text": "Plants turn sunlight, water and CO2 into sugar."},
    {"title": "Rust", "text": "Rust is a systems programming language focused on memory safety."},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str | None:
    """The library's database: None for the data directory's SQLite, else the URL of a
    PostgreSQL database made for this test."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def open_index(database_url) -> Callable[..., Index]:
    """`Index(data_dir, ...)` on this test's database."""
    return functools.partial(Index, database_url=database_url)


@pytest.fixture
def index(tmp_path, open_index):
    with open_index(tmp_path / "data") as opened:
        yield opened


def half_ingested(collection_id: int) -> Document:
    """A document row a writer added and never finished (as a crash leaves it)."""
    return Document(
        collection_id=collection_id,
        sha256="0" * 64,
        title="half ingested",
        source_name="half.txt",
        mime_type="text/plain",
        size_bytes=1,
        status=DocumentStatus.PENDING,
    )


def assert_consistent(index: Index) -> None:
    """The database and both indexes agree, and no document is half-ingested."""
    with index.database.session() as session:
        pending = session.scalars(
            select(Document.id).where(Document.status == DocumentStatus.PENDING)
        ).all()
        assert not pending, f"documents left pending: {pending}"
        unready_chunks = session.scalars(
            select(Chunk.id).join(Document).where(Document.status != DocumentStatus.READY)
        ).all()
        assert not unready_chunks
        for document in session.scalars(select(Document)):
            count = len(document.chunks)
            assert count == (document.num_chunks if document.status == "ready" else 0)
    for collection_id in index.catalog.collection_ids():
        expected = np.sort(index.catalog.ready_chunk_ids(collection_id))
        indexes = index.live.get(collection_id)
        dense = indexes.vectors.ids() if indexes.vectors is not None else np.empty(0)
        assert np.array_equal(np.sort(dense), expected)
        assert np.array_equal(np.sort(indexes.keywords.ids()), expected)
        # Every vector is in the database too, as FAISS holds it: another server needs it.
        stored = index.catalog.stored_vectors(expected, index.embedder.dim)
        assert sorted(stored) == expected.tolist()
        if len(expected):
            held = indexes.vectors.vectors(expected)
            assert np.allclose(np.stack([stored[i] for i in expected.tolist()]), held, atol=1e-6)
