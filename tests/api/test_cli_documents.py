"""`pagedrag ingest / documents / search / delete / reindex` as a user runs them."""

from pathlib import Path

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


def test_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert_one_line_error(pagedrag("search", " ", *data), "the query is empty")
    assert_one_line_error(pagedrag("search", "x", "--embedder", "nope", *data), "unknown embedder")
    missing = pagedrag("ingest", str(tmp_path / "nowhere.pdf"), "--quiet", *data)
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
