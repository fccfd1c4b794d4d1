"""PostgreSQL beyond what every index test checks on it (tests/indexer/conftest.py): the
command line's options, bad and unreachable URLs, libraries made by older versions."""

import pytest

from indexer import Index
from indexer.errors import IndexerError
from tests.indexer.conftest import FACTS


def test_the_cli_takes_the_database_url_by_option_or_environment(tmp_path, postgres, monkeypatch):
    from tests.api.test_cli import pagedrag

    postgres_url = postgres.new_database()
    notes = tmp_path / "ferry.txt"
    notes.write_text("The ferry to Bergen leaves at nine.")
    data = ["--data-dir", str(tmp_path / "data")]
    ingest = pagedrag("ingest", str(notes), "--quiet", "--database-url", postgres_url, *data)
    assert ingest.returncode == 0, ingest.stderr
    assert not (tmp_path / "data" / "pagedrag.db").exists()
    monkeypatch.setenv("PAGEDRAG_DATABASE_URL", postgres_url)
    listing = pagedrag("documents", *data)
    assert listing.returncode == 0 and "ferry.txt" in listing.stdout


def test_a_bad_database_url_is_one_clear_error(tmp_path):
    with pytest.raises(IndexerError, match="cannot use database URL"):
        Index(tmp_path, database_url="nosuchdb://x")


def test_an_unreachable_database_is_one_clear_error_without_the_password(tmp_path):
    url = f"postgresql+psycopg://pagedrag:s3cret@/library?host={tmp_path}&port=1"
    with pytest.raises(IndexerError, match=r"cannot open database .*is its server up") as error:
        Index(tmp_path, database_url=url)
    assert "s3cret" not in str(error.value) and "\n" not in str(error.value)


def test_a_library_made_before_tenants_is_migrated_on_postgresql(tmp_path, postgres):
    from sqlalchemy import create_engine, text

    url = postgres.new_database()
    with Index(tmp_path, database_url=url) as index:
        ids = index.ingest_texts(FACTS[:2], "notes")
    old = create_engine(url)
    with old.begin() as connection:  # the collections table as it was before tenants
        connection.execute(text("ALTER TABLE collections DROP COLUMN tenant"))
        connection.execute(text("ALTER TABLE collections ADD CONSTRAINT old_name UNIQUE (name)"))
    with Index(tmp_path, database_url=url) as index:
        assert [d.id for d in index.documents("notes")] == ids
        (acme,) = index.ingest_texts(FACTS[2:3], "notes", tenant="acme")
        assert [d.id for d in index.documents("notes", tenant="acme")] == [acme]
        assert index.search("capital of France", k=1, tenant="acme")[0].document_id == acme
    with old.connect() as connection:
        constraints = connection.execute(
            text("SELECT conname FROM pg_constraint WHERE conrelid = 'collections'::regclass")
        ).scalars()
        assert "old_name" not in set(constraints)
    old.dispose()
