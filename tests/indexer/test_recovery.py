"""The database is the source of truth: unreadable index files are rebuilt from it, and
opening an index never waits for another process that is writing."""

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.collection_indexes import CollectionIndexes
from indexer.store import Collection
from tests.indexer.conftest import FACTS, assert_consistent, half_ingested

ROOT = Path(__file__).resolve().parents[2]
# Holds the writer lock of a data directory, as an ingesting `pagedrag` process does.
HOLD_LOCK = """
import sys, time
from pathlib import Path
from indexer.file_lock import exclusive
with exclusive(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(300)
"""


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damaged", ["dense.faiss", "keywords/*.npz", "keywords/manifest.json", "state.json"]
)
def test_an_unreadable_index_file_is_rebuilt_from_the_database(
    tmp_path, open_index, caplog, damaged
):
    with open_index(tmp_path) as index:
        ids = index.ingest_texts(FACTS)
    path = next(tmp_path.glob(f"indexes/*/{damaged}"))
    truncate(path)
    with caplog.at_level(logging.WARNING), open_index(tmp_path) as reopened:
        assert "cannot be read" in caplog.text and damaged.split("/")[0] in caplog.text
        assert_consistent(reopened)
        for mode in ("dense", "bm25", "hybrid"):
            assert reopened.search("capital of France", k=1, mode=mode)[0].document_id == ids[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING), open_index(tmp_path) as again:  # saved repaired
        assert "cannot be read" not in caplog.text
        again.reindex()
        assert_consistent(again)


def test_opening_never_waits_for_another_processes_writer(tmp_path, open_index, monkeypatch):
    with open_index(tmp_path) as index:
        ids = index.ingest_texts(FACTS)
        collection_id = index.catalog.collection_ids()[0]
        with index.database.session() as session:  # what a writer has half done
            session.add(half_ingested(collection_id))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".writer.lock")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with open_index(tmp_path) as reader:
            opened_s = time.monotonic() - started
            statuses = {d.title: d.status for d in reader.documents()}
            hits = reader.search("capital of France", k=5)
            # The writer commits but has not saved its index files yet: searching goes on
            # with the files already loaded, not a reload of the same files per query.
            with reader.database.session() as session:
                session.get_one(Collection, collection_id).generation += 1
            loads = []
            load = CollectionIndexes.load
            monkeypatch.setattr(
                CollectionIndexes, "load", lambda *a, **k: loads.append(a) or load(*a, **k)
            )
            assert reader.search("capital of France", k=1)[0].document_id == ids[0]
            assert reader.search("sunlight and water", k=1, mode="bm25")
            assert loads == []
        assert opened_s < 10, f"opening waited {opened_s:.0f} s for the writer"
        assert statuses["half ingested"] == "pending"  # the writer's to finish or fail
        assert hits[0].document_id == ids[0]
        assert all(hit.title != "half ingested" for hit in hits)
    finally:
        holder.kill()
        holder.wait()
    with open_index(tmp_path) as after:  # the writer is gone: its interrupted work is failed
        statuses = {d.title: d.status for d in after.documents()}
        assert statuses["half ingested"] == "failed"
        assert_consistent(after)
