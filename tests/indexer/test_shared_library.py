"""Several servers on one PostgreSQL library. Each `Index` here has a data directory of its
own (its FAISS and BM25 cache), as servers on separate machines would; only the
database is shared."""

import threading

import pytest

from indexer import Index
from indexer.embedders import load_embedder
from tests.indexer.conftest import FACTS, assert_consistent, half_ingested
from tests.indexer.test_index import TIDES, RecordingEmbedder


@pytest.fixture
def library(postgres) -> str:
    return postgres.new_database()


def test_what_one_server_changes_another_finds_at_its_next_search(tmp_path, library):
    with (
        Index(tmp_path / "a", database_url=library) as a,
        Index(tmp_path / "b", database_url=library) as b,
    ):
        assert b.search("capital of France", k=1) == []
        ids = a.ingest_texts(FACTS)
        for mode in ("hybrid", "dense", "bm25"):
            assert b.search("capital of France", k=1, mode=mode)[0].document_id == ids[0]
        b.delete(ids[0])
        assert all(hit.document_id != ids[0] for hit in a.search("Paris, France", k=10))
        (tides,) = b.ingest_texts([TIDES])
        a.delete(ids[1])  # A writes before it searched again: it catches up first
        assert a.search("high water tables", k=1, mode="bm25")[0].document_id == tides
        assert [d.id for d in b.documents()] == [*ids[2:], tides]
        assert_consistent(a)
        assert_consistent(b)


def test_a_restarted_server_catches_up_from_the_database_without_embedding(tmp_path, library):
    with Index(tmp_path / "a", database_url=library) as a:
        ids = a.ingest_texts(FACTS[:2])
    with Index(tmp_path / "b", database_url=library) as b:  # while A is down
        later = b.ingest_texts(FACTS[2:])
        b.delete(ids[0])
    recorder = RecordingEmbedder(load_embedder())
    with Index(tmp_path / "a", embedder=recorder, database_url=library) as a:
        assert_consistent(a)
        assert a.search("sunlight water sugar", k=1)[0].document_id == later[0]
        assert all(hit.document_id != ids[0] for hit in a.search("capital of France", k=10))
    assert recorder.seen == []  # every vector came from the database


def test_index_files_of_another_library_are_rebuilt_not_trusted(tmp_path, postgres):
    first, second = postgres.new_database(), postgres.new_database()
    with Index(tmp_path / "data", database_url=first) as index:
        index.ingest_texts(FACTS[:1])  # collection 1, generation 1, chunk 1: Paris
    with Index(tmp_path / "other", database_url=second) as other:
        (cats,) = other.ingest_texts(FACTS[1:2])  # collection 1, generation 1, chunk 1: cats
    with Index(tmp_path / "data", database_url=second) as switched:
        assert switched.search("Eiffel Tower", k=1, mode="bm25") == []
        assert switched.search("small mammals that purr", k=1)[0].document_id == cats
        assert_consistent(switched)


def test_one_writer_at_a_time_across_servers(tmp_path, library):
    with (
        Index(tmp_path / "a", database_url=library) as a,
        Index(tmp_path / "b", database_url=library) as b,
    ):
        with b.database.library_lock.holding(wait=True):  # B writes, from another machine
            writer = threading.Thread(target=a.ingest_texts, args=(FACTS,))
            writer.start()
            writer.join(timeout=2)
            assert writer.is_alive() and a.documents() == []  # A waits for B to finish
        writer.join()
        assert len(b.documents()) == len(FACTS)
        assert_consistent(a)
        assert_consistent(b)


def test_two_servers_writing_at_once_keep_the_library_whole(tmp_path, library):
    def notes(side: str) -> list[list[dict[str, str]]]:
        return [[{"text": f"Note {i} of server {side}: tide {i}."}] for i in range(8)]

    with (
        Index(tmp_path / "a", database_url=library) as a,
        Index(tmp_path / "b", database_url=library) as b,
    ):
        writers = [
            threading.Thread(target=lambda i=i, s=s: [i.ingest_texts(n) for n in notes(s)])
            for i, s in ((a, "A"), (b, "B"))
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        assert len(a.documents()) == 16 and {d.status for d in b.documents()} == {"ready"}
        assert_consistent(a)
        assert_consistent(b)


def test_a_server_opening_leaves_another_servers_work_in_progress_alone(tmp_path, library):
    with Index(tmp_path / "a", database_url=library) as a:
        a.ingest_texts(FACTS[:1])
        collection_id = a.catalog.collection_ids()[0]
        with a.database.library_lock.holding(wait=True):  # A is ingesting this one
            with a.database.session() as session:
                session.add(half_ingested(collection_id))
            with Index(tmp_path / "b", database_url=library) as b:
                assert {d.title: d.status for d in b.documents()}["half ingested"] == "pending"
    with Index(tmp_path / "c", database_url=library) as c:  # no writer now: it was cut off
        assert {d.title: d.status for d in c.documents()}["half ingested"] == "failed"
