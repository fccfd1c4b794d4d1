"""Collections belong to tenants: one tenant never sees, searches or changes another's,
and a library made before tenants existed becomes the default tenant's, unchanged."""

import sqlite3

import pytest

from indexer import Index
from indexer.errors import DocumentNotFoundError, IndexerError
from tests.indexer.conftest import FACTS, assert_consistent

# The collections table as PagedRAG made it before tenants: names unique library-wide.
OLD_COLLECTIONS = """
CREATE TABLE collections_old (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(200) NOT NULL UNIQUE,
    created_at DATETIME NOT NULL,
    generation BIGINT NOT NULL
)"""


def test_each_tenant_sees_and_searches_only_its_own_collections(index):
    ours = index.ingest_texts(FACTS[:2], tenant="acme")
    theirs = index.ingest_texts(FACTS[2:], "notes", tenant="globex")
    # The same collection name in two tenants is two collections.
    also_default = index.ingest_texts(FACTS[2:3], tenant="globex")

    assert {d.id for d in index.documents(tenant="acme")} == set(ours)
    assert {d.id for d in index.documents(tenant="globex")} == set(theirs + also_default)
    assert index.documents(tenant="initech") == []
    assert index.collections(tenant="acme") == ["default"]
    assert sorted(index.collections(tenant="globex")) == ["default", "notes"]

    hits = index.search("What is the capital of France?", k=10, tenant="globex")
    assert hits and all(hit.document_id in theirs + also_default for hit in hits)
    assert index.search("capital of France", k=10, tenant="acme")[0].document_id == ours[0]
    # Naming another tenant's documents finds nothing of them.
    assert index.search("Paris", k=5, document_ids=ours, tenant="globex") == []
    with pytest.raises(IndexerError, match=r"no collection named 'notes' \(collections: default"):
        index.search("sugar", collection="notes", tenant="acme")


def test_another_tenants_document_is_not_found_and_cannot_be_deleted(index):
    (theirs,) = index.ingest_texts(FACTS[:1], tenant="globex")
    for call in (index.document, index.document_text, index.original_file, index.delete):
        with pytest.raises(DocumentNotFoundError, match=f"no document with id {theirs}"):
            call(theirs, tenant="acme")
    assert index.document(theirs, tenant="globex").title == "Paris"
    assert index.document_count() == 1
    index.delete(theirs, tenant="globex")
    assert index.document_count() == 0
    assert_consistent(index)


def test_a_library_made_before_tenants_becomes_the_default_tenants(tmp_path):
    data = tmp_path / "data"
    with Index(data) as index:
        ids = index.ingest_texts(FACTS[:2]) + index.ingest_texts(FACTS[2:], "notes")
    _downgrade_collections(data / "pagedrag.db")

    with Index(data) as index:
        assert [d.id for d in index.documents()] == ids
        assert index.collections() == ["default", "notes"]
        assert index.search("capital of France", k=1)[0].document_id == ids[0]
        # The old name constraint is gone: another tenant may use the same names.
        (acme,) = index.ingest_texts(FACTS[3:], "notes", tenant="acme")
        new_collection = index.catalog.collection_id("notes", "acme")
        assert new_collection > index.catalog.collection_id("notes", "default")
        assert [d.id for d in index.documents("notes", tenant="acme")] == [acme]
        assert_consistent(index)
    with sqlite3.connect(data / "pagedrag.db") as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("SELECT count(*) FROM documents").fetchone() == (5,)


def test_tenant_names_are_checked(index):
    with pytest.raises(IndexerError, match="a tenant name must have 1 to 100 characters"):
        index.ingest_texts(FACTS[:1], tenant="x" * 101)


def _downgrade_collections(path):
    """Rewrite the collections table as an old PagedRAG left it, rows and ids kept."""
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("BEGIN")
        db.execute(OLD_COLLECTIONS)
        db.execute(
            "INSERT INTO collections_old SELECT id, name, created_at, generation FROM collections"
        )
        db.execute("DROP TABLE collections")
        db.execute("ALTER TABLE collections_old RENAME TO collections")
        db.execute("COMMIT")
