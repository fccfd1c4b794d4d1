"""`Index` end to end on the real default embedder: ingest, search, dedup, delete, reindex."""

import shutil

import pytest

from indexer import ChunkingConfig, Index, IndexConfig
from indexer.embedders import load_embedder
from indexer.errors import DocumentNotFoundError, EmbedderMismatchError, IndexerError
from tests.indexer.conftest import FACTS, assert_consistent
from tests.indexer.documents import make_docx, make_pdf


def test_texts_are_found_by_meaning_and_by_words(index):
    ids = index.ingest_texts(FACTS)
    assert len(ids) == 4
    for mode in ("hybrid", "dense", "bm25"):
        hits = index.search("What is the capital city of France?", k=2, mode=mode)
        assert hits[0].document_id == ids[0], mode
        assert hits[0].title == "Paris"
        assert hits[0].text == FACTS[0]["text"]
    dense = index.search("feline pets", k=1, mode="dense")[0]
    assert dense.document_id == ids[1]
    assert dense.dense_score is not None and dense.bm25_score is None
    assert_consistent(index)


def test_hits_carry_metadata_and_a_relevance_flag(index):
    index.ingest_texts([{**FACTS[0], "metadata": {"source": "atlas", "year": 2024}}, FACTS[1]])
    top = index.search("capital of France", k=1)[0]
    assert top.metadata == {"source": "atlas", "year": 2024}
    assert top.relevant
    off_topic = index.search("how do I compile a kernel module", k=2, mode="dense")
    assert not any(hit.relevant for hit in off_topic)


def test_bm25_hits_are_judged_relevant_by_meaning_too(index):
    ids = index.ingest_texts(FACTS)
    on_topic = index.search("capital of France", k=1, mode="bm25")[0]
    assert on_topic.document_id == ids[0] and on_topic.relevant
    dense = index.search("capital of France", k=1, mode="dense")[0]
    assert on_topic.dense_score == pytest.approx(dense.dense_score, abs=1e-5)
    # Shares a word ("memory") with the Rust fact, but not its meaning.
    word_match = index.search("memory of my grandmother cooking", k=3, mode="bm25")
    assert [hit.title for hit in word_match] == ["Rust"]
    assert word_match[0].bm25_score and not word_match[0].relevant


def test_the_same_content_is_not_indexed_twice(index):
    first = index.ingest_texts(FACTS)
    again = index.ingest_texts([FACTS[2], {"title": "other title", "text": FACTS[0]["text"]}])
    assert again == [first[2], first[0]]
    assert len(index.documents()) == 4
    assert len(index.search("Paris capital", k=10, mode="bm25")) == 1


def test_a_deleted_document_is_never_retrieved_again(index, open_index):
    ids = index.ingest_texts(FACTS)
    index.delete(ids[0])
    assert all(hit.document_id != ids[0] for hit in index.search("capital of France", k=10))
    assert [d.id for d in index.documents()] == ids[1:]
    with open_index(index.data_dir) as reopened:
        assert all(h.document_id != ids[0] for h in reopened.search("Paris France", k=10))
        assert_consistent(reopened)
    with pytest.raises(DocumentNotFoundError, match=str(ids[0])):
        index.delete(ids[0])


def test_pdf_pages_are_cited_and_the_original_is_kept(index, tmp_path):
    pdf = make_pdf(
        tmp_path / "report.pdf",
        ["Introduction to the annual report.", "Revenue grew by 12 percent in Norway."],
    )
    notes = make_docx(tmp_path / "notes.docx", ["Meeting notes: the budget was approved."])
    report = index.ingest_files([pdf, notes])
    assert report.new_documents == 2 and report.pages == 2 and not report.failures
    hit = index.search("How much did revenue grow in Norway?", k=1)[0]
    assert (hit.title, hit.page) == ("report.pdf", 2)
    assert "12 percent" in hit.text
    kept = index.original_file(hit.document_id)
    assert kept is not None and kept.read_bytes() == pdf.read_bytes()
    index.delete(hit.document_id)
    assert not kept.exists()


def test_a_bad_file_fails_alone_with_its_reason(index, tmp_path):
    (tmp_path / "docs").mkdir()
    good = tmp_path / "docs" / "good.md"
    good.write_text("# Glaciers\n\nGlaciers are slow rivers of ice.\n")
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "docs" / "photo.png").write_bytes(b"\x89PNG")
    report = index.ingest_files([tmp_path / "docs", tmp_path / "missing.txt"])
    assert report.new_documents == 1
    errors = {f.source.rsplit("/", 1)[-1]: f.error for f in report.failures}
    assert sorted(errors) == ["broken.pdf", "missing.txt"]
    assert errors["broken.pdf"].startswith("broken.pdf: ")
    assert "no such file" in errors["missing.txt"]
    assert report.skipped_unsupported == [str(tmp_path / "docs" / "photo.png")]
    statuses = {d.title: (d.status, d.error) for d in index.documents()}
    assert statuses["Glaciers"] == ("ready", None)
    assert statuses["broken.pdf"][0] == "failed" and "broken.pdf" in statuses["broken.pdf"][1]
    assert_consistent(index)


def test_collections_scope_the_search(index):
    index.ingest_texts(FACTS[:2], collection="travel")
    index.ingest_texts(FACTS[2:], collection="science")
    assert index.collections() == ["travel", "science"]
    hits = index.search("capital of France", k=5, collection="science")
    assert {hit.collection for hit in hits} == {"science"}
    assert {h.title for h in index.search("capital of France", k=5)} >= {"Paris"}
    with pytest.raises(IndexerError, match="no collection named 'nope'"):
        index.search("anything", collection="nope")
    with pytest.raises(IndexerError, match="no collection named 'nope'"):
        index.documents("nope")
    assert [d.title for d in index.documents("travel")] == ["Paris", "Cats"]


def test_search_within_chosen_documents(index):
    ids = index.ingest_texts(FACTS)
    hits = index.search("capital of France", k=5, document_ids=[ids[3]])
    assert [hit.document_id for hit in hits] == [ids[3]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "  "}, "empty"),
        ({"query": "x", "mode": "fuzzy"}, "unknown search mode"),
        ({"query": "x", "k": 0}, "k must be"),
    ],
)
def test_bad_searches_are_refused_clearly(index, kwargs, message):
    with pytest.raises(IndexerError, match=message):
        index.search(**kwargs)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"title": "t"}, "'text' must be a non-empty string"),
        ({"text": "ok", "metadata": ["a"]}, "'metadata' must be an object"),
        ("just a string", "expected an object"),
    ],
)
def test_bad_texts_are_refused_before_anything_is_written(index, item, message):
    with pytest.raises(IndexerError, match=message):
        index.ingest_texts([FACTS[0], item])
    assert index.documents() == []


def test_another_embedder_is_refused_until_reindexed(index, open_index):
    index.ingest_texts(FACTS)
    with open_index(index.data_dir, embedder="multilingual-e5-small") as other:
        with pytest.raises(EmbedderMismatchError, match="pagedrag reindex --embedder"):
            other.search("capital of France")
        with pytest.raises(EmbedderMismatchError):
            other.ingest_texts([{"text": "more"}])
        assert other.search("Paris", mode="bm25")  # keyword search needs no embedder
        other.reindex()
        assert other.search("巴黎是哪个国家的首都？", k=1, mode="dense")[0].title == "Paris"
        assert_consistent(other)
    with (
        open_index(index.data_dir, embedder="all-minilm-l6-v2") as original,
        pytest.raises(EmbedderMismatchError, match="'multilingual-e5-small'"),
    ):
        original.search("capital")


def test_lost_index_files_are_rebuilt_from_the_database(index, open_index):
    ids = index.ingest_texts(FACTS)
    shutil.rmtree(index.data_dir / "indexes")
    with open_index(index.data_dir) as reopened:
        assert_consistent(reopened)
        assert reopened.search("capital of France", k=1)[0].document_id == ids[0]


def test_unknown_embedder_lists_the_known_ones(tmp_path):
    with pytest.raises(IndexerError, match="all-minilm-l6-v2, multilingual-e5-small"):
        Index(tmp_path, embedder="word2vec")


class RecordingEmbedder:
    """Wraps the real embedder and keeps what it was asked to embed."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_documents(self, texts, progress=None):
        self.seen.extend(texts)
        return self.inner.embed_documents(texts, progress)


def test_titles_go_with_each_chunk_but_never_twice(tmp_path):
    recorder = RecordingEmbedder(load_embedder())
    with Index(tmp_path, embedder=recorder) as index:
        concrete = {"text": "Concrete needs 28 days to cure."}
        index.ingest_texts([concrete, {"title": "Steel", "text": "Rebar rusts."}])
    assert recorder.seen == ["Concrete needs 28 days to cure.", "Steel Rebar rusts."]


def test_a_data_dir_that_cannot_be_a_directory_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(IndexerError, match="is a file, not a directory"):
        Index(tmp_path / "file")
    with pytest.raises(IndexerError, match=f"{tmp_path / 'file'} is a file"):
        Index(tmp_path / "file" / "below")


def test_chunks_longer_than_the_embedder_reads_are_refused(tmp_path):
    config = IndexConfig(chunking=ChunkingConfig(max_tokens=300, overlap_tokens=40))
    with Index(tmp_path, config=config) as index:
        with pytest.raises(IndexerError, match=r"longer than .* reads \(254 tokens\)"):
            index.ingest_texts(FACTS)
        with pytest.raises(IndexerError, match="at most 254 tokens"):
            index.reindex()
        assert index.documents() == []


TIDES = {"title": "Tides", "text": " ".join(f"Table {i} lists high water." for i in range(30))}


def test_an_index_keeps_its_chunking_until_reindexed_with_another(tmp_path, open_index):
    with open_index(tmp_path, config=IndexConfig(chunking=ChunkingConfig(32, 8))) as index:
        index.ingest_texts([TIDES])
        small = index.documents()[0].num_chunks
    with open_index(tmp_path) as index:  # no chunking given: the index's own
        assert index.chunking == ChunkingConfig(32, 8)
        index.ingest_texts([FACTS[0]])
    with open_index(tmp_path, config=IndexConfig(chunking=ChunkingConfig(128, 16))) as index:
        with pytest.raises(IndexerError, match="pagedrag reindex --chunk-tokens"):
            index.ingest_texts([FACTS[1]])
        index.reindex()
        assert 1 <= index.documents()[0].num_chunks < small
        assert_consistent(index)
    with open_index(tmp_path) as index:
        assert index.chunking == ChunkingConfig(128, 16)


def test_searches_from_other_threads_during_an_ingest_see_consistent_results(index):
    """The HTTP server searches while it ingests: no error, and every hit is a real chunk."""
    import threading

    index.ingest_texts(FACTS)
    batch = [{"title": f"Note {i}", "text": f"Field note {i} about tides."} for i in range(600)]
    errors, results = [], []

    def search_repeatedly():
        try:
            while writer.is_alive():
                results.append(index.search("capital of France tides", k=5))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    writer = threading.Thread(target=index.ingest_texts, args=(batch,))
    writer.start()
    readers = [threading.Thread(target=search_repeatedly) for _ in range(2)]
    for reader in readers:
        reader.start()
    writer.join()
    for reader in readers:
        reader.join()
    assert not errors and results
    assert_consistent(index)
    assert len(index.search("Field note 599 tides", k=3, mode="bm25")) == 3
