"""The same index on PostgreSQL: a real server in a throwaway cluster on a Unix socket."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer import Index
from tests.indexer.conftest import FACTS, assert_consistent

PORT = 55_432


def as_server_user(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root; as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="pagedrag-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    data = root / "data"
    subprocess.run(
        as_server_user("initdb", "-D", str(data), "-U", "postgres", "--auth=trust"),
        check=True,
        capture_output=True,
    )
    options = f"-k {root} -p {PORT} -c listen_addresses=''"
    start = as_server_user("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"))
    subprocess.run([*start, "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={PORT}"
    finally:
        stop = as_server_user("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_ingest_search_delete_on_postgresql(tmp_path, postgres_url):
    with Index(tmp_path, database_url=postgres_url) as index:
        ids = index.ingest_texts([{**fact, "metadata": {"n": i}} for i, fact in enumerate(FACTS)])
        assert index.ingest_texts(FACTS[:1]) == ids[:1]
        top = index.search("What is the capital of France?", k=1)[0]
        assert (top.document_id, top.metadata) == (ids[0], {"n": 0})
        index.delete(ids[0])
        assert_consistent(index)
    with Index(tmp_path, database_url=postgres_url) as reopened:
        assert [d.id for d in reopened.documents()] == ids[1:]
        assert all(h.document_id != ids[0] for h in reopened.search("Paris", k=5))


def test_the_cli_takes_the_database_url_by_option_or_environment(
    tmp_path, postgres_url, monkeypatch
):
    from tests.api.test_cli import pagedrag

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
    from indexer.errors import IndexerError

    with pytest.raises(IndexerError, match="cannot use database URL"):
        Index(tmp_path, database_url="nosuchdb://x")


def test_a_library_made_before_tenants_is_migrated_on_postgresql(tmp_path, postgres_url):
    from sqlalchemy import create_engine, text

    server = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text("CREATE DATABASE before_tenants"))
    server.dispose()
    url = postgres_url.replace("/postgres?", "/before_tenants?")
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
