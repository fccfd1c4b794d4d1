"""`pagedrag ingest / documents / search / delete / reindex` as a user runs them."""

from pathlib import Path

import pytest

from tests.api.test_cli import assert_one_line_error, pagedrag
from tests.indexer.documents import make_pdf


def test_ingest_list_search_delete(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "fjords.pdf", ["Chapter one.", "Fjords were carved by glaciers."])
    (folder / "broken.docx").write_bytes(b"not a zip file")
    (folder / "notes.txt").write_text("The ferry to Bergen leaves at nine.")
    data = ["--data-dir", str(tmp_path / "data")]

    ingest = pagedrag("ingest", str(folder), "--quiet", *data)
    assert ingest.returncode == 1  # one file failed; the others are in
    assert "2 new documents, 2 pages" in ingest.stdout
    assert "1 failed" in ingest.stdout
    assert "failed: broken.docx: " in ingest.stderr and "Traceback" not in ingest.stderr

    again = pagedrag("ingest", str(folder / "notes.txt"), "--quiet", *data)
    assert again.returncode == 0 and "0 new documents" in again.stdout
    assert "1 duplicates skipped" in again.stdout

    listing = pagedrag("documents", *data)
    assert listing.returncode == 0
    rows = listing.stdout.strip().splitlines()
    assert rows[0].split()[:3] == ["ID", "COLLECTION", "STATUS"]
    assert any("fjords.pdf" in row and " ready " in row for row in rows)
    assert any("broken.docx" in row and " failed " in row for row in rows)

    search = pagedrag("search", "what carved the fjords?", "-k", "1", *data)
    assert search.returncode == 0
    assert "fjords.pdf, p. 2" in search.stdout

    document_id = next(row.split()[0] for row in rows if "fjords.pdf" in row)
    assert pagedrag("delete", document_id, *data).returncode == 0
    assert "fjords.pdf" not in pagedrag("documents", *data).stdout
    assert_one_line_error(
        pagedrag("delete", document_id, *data), f"no document with id {document_id}"
    )


def test_tenant_picks_whose_library_a_command_works_on(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("The ferry to Bergen leaves at nine.")
    data = ["--data-dir", str(tmp_path / "data")]
    acme = [*data, "--tenant", "acme"]
    assert pagedrag("ingest", str(notes), "--quiet", *acme).returncode == 0

    assert "no documents yet" in pagedrag("documents", *data).stdout
    assert "nothing found" in pagedrag("search", "ferry to Bergen", *data).stdout
    rows = pagedrag("documents", *acme).stdout.splitlines()
    (document_id,) = [row.split()[0] for row in rows if "notes.txt" in row]
    assert "notes.txt" in pagedrag("search", "ferry to Bergen", *acme).stdout
    assert_one_line_error(
        pagedrag("delete", document_id, *data), f"no document with id {document_id}"
    )
    reindex = pagedrag("reindex", "--quiet", *data)
    assert reindex.returncode == 0 and "re-indexed 1 documents" in reindex.stdout
    assert pagedrag("delete", document_id, *acme).returncode == 0


def test_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert_one_line_error(pagedrag("search", " ", *data), "the query is empty")
    assert_one_line_error(pagedrag("search", "x", "--embedder", "nope", *data), "unknown embedder")
    missing = pagedrag("ingest", str(tmp_path / "nowhere.pdf"), "--quiet", *data)
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr


def test_a_data_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = pagedrag("documents", "--data-dir", str(tmp_path / "file"))
    assert_one_line_error(result, "is a file, not a directory")
    result = pagedrag("documents", "--data-dir", str(tmp_path / "file" / "below"))
    assert_one_line_error(result, f"{tmp_path / 'file'} is a file, not a directory")


def test_an_unknown_collection_is_a_one_line_error(tmp_path: Path) -> None:
    result = pagedrag("documents", "--collection", "nope", "--data-dir", str(tmp_path))
    assert_one_line_error(result, "no collection named 'nope'")


def test_the_database_url_comes_from_the_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    result = pagedrag("documents", "--database-url", "nosuchdb://x", *data)
    assert_one_line_error(result, "cannot use database URL 'nosuchdb://x'")
    monkeypatch.setenv("PAGEDRAG_DATABASE_URL", "nosuchdb://from-env")
    assert_one_line_error(pagedrag("documents", *data), "'nosuchdb://from-env'")
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert pagedrag("documents", "--database-url", url, *data).returncode == 0  # option wins
    assert (tmp_path / "elsewhere.db").exists()
    assert not (tmp_path / "data" / "pagedrag.db").exists()


def test_chunk_options_on_ingest_and_reindex(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    notes = tmp_path / "tides.txt"
    notes.write_text(" ".join(f"Table {i} lists the high water at the harbour." for i in range(40)))
    assert_one_line_error(
        pagedrag("ingest", str(notes), "--chunk-tokens", "8", "--quiet", *data),
        "chunk size must be at least 16 tokens",
    )
    assert pagedrag("ingest", str(notes), "--chunk-tokens", "32", "--quiet", *data).returncode == 0
    small = int(pagedrag("documents", *data).stdout.splitlines()[1].split()[4])
    other = tmp_path / "other.txt"
    other.write_text("The ferry to Bergen leaves at nine.")
    assert_one_line_error(
        pagedrag("ingest", str(other), "--chunk-tokens", "128", "--quiet", *data),
        "pagedrag reindex --chunk-tokens",
    )
    assert pagedrag("reindex", "--chunk-tokens", "128", "--quiet", *data).returncode == 0
    assert int(pagedrag("documents", *data).stdout.splitlines()[1].split()[4]) < small
    assert pagedrag("ingest", str(other), "--quiet", *data).returncode == 0  # its own setting


def test_a_damaged_index_file_is_rebuilt_not_a_traceback(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    (tmp_path / "notes.txt").write_text("The ferry to Bergen leaves at nine.")
    assert pagedrag("ingest", str(tmp_path / "notes.txt"), "--quiet", *data).returncode == 0
    for name in ("dense.faiss", "state.json"):
        path = next((tmp_path / "data" / "indexes").glob(f"*/{name}"))
        path.write_bytes(path.read_bytes()[:10])
        listing = pagedrag("documents", *data)
        assert listing.returncode == 0 and "notes.txt" in listing.stdout
        assert "cannot be read" in listing.stderr and "Traceback" not in listing.stderr
    path.write_bytes(b"")
    reindex = pagedrag("reindex", "--quiet", *data)
    assert reindex.returncode == 0 and "Traceback" not in reindex.stderr, reindex.stderr
    search = pagedrag("search", "when does the ferry leave?", "-k", "1", *data)
    assert "notes.txt" in search.stdout and "below the relevance" not in search.stdout
