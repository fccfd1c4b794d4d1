"""Killing a real `pagedrag ingest` at any moment leaves database and indexes consistent.

Each kill waits until the ingest is seen (by reading its database, as any other reader
may) to be at a given point, so the test does not depend on how fast the machine is.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from tests.indexer.conftest import assert_consistent

TOPICS = ["glaciers", "volcanoes", "tides", "comets", "forests", "deserts", "rivers", "storms"]
NOTES = 700  # one chunk each: two embedding groups (512 + 188), two commits
Statuses = dict[str, int]  # document status -> how many


def write_corpus(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        (folder / f"note-{i:04d}.md").write_text(
            f"# Note {i} on {topic}\n\nObservation {i}: the {topic} changed in year {1900 + i}. "
            f"Field team {i % 17} measured it twice and recorded value {i * 37 % 1000}.\n"
        )


@pytest.fixture
def watcher(tmp_path, database_url) -> Iterator[Engine]:
    """Reads the ingest's database (its SQLite read-only: never creating it)."""
    sqlite = f"sqlite:///file:{tmp_path / 'data' / 'pagedrag.db'}?mode=ro&uri=true"
    engine = create_engine(database_url or sqlite)
    yield engine
    engine.dispose()


def start_ingest(folder: Path, data_dir: Path, database_url: str | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "api.cli", "ingest", str(folder), "--quiet"]
    command += ["--data-dir", str(data_dir)]
    if database_url is not None:
        command += ["--database-url", database_url]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def statuses(database: Engine) -> Statuses:
    """Documents by status, read the way any other process would; {} before the schema."""
    try:
        with database.connect() as connection:
            rows = connection.execute(
                text("SELECT status, count(*) FROM documents GROUP BY status")
            )
            return {status: count for status, count in rows}
    except DBAPIError:  # no database or no table yet
        return {}


def kill_when(
    process: subprocess.Popen, database: Engine, point: Callable[[Statuses], bool]
) -> None:
    """SIGKILL the ingest as soon as its database shows `point`; fail if it never does."""
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if point(statuses(database)):
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            return
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"the ingest ended before the kill point; last seen {statuses(database)}")


def mid_parse(seen: Statuses) -> bool:
    """Some files registered (pending), others not yet read, nothing embedded."""
    return 50 <= seen.get("pending", 0) < NOTES - 100 and not seen.get("ready")


def all_parsed_none_committed(seen: Statuses) -> bool:
    """Every file registered; chunking or embedding the first group under way."""
    return seen.get("pending", 0) == NOTES


def between_commits(seen: Statuses) -> bool:
    """The first group committed (ready), the second still being embedded."""
    return seen.get("ready", 0) > 0 and seen.get("pending", 0) > 0


def test_killing_an_ingest_never_leaves_half_a_document(
    tmp_path, open_index, database_url, watcher
):
    folder, data_dir = tmp_path / "notes", tmp_path / "data"
    write_corpus(folder, NOTES)
    for point in (mid_parse, all_parsed_none_committed, between_commits):
        kill_when(start_ingest(folder, data_dir, database_url), watcher, point)
        with open_index(data_dir) as index:
            assert_consistent(index)
            documents = index.documents()
            interrupted = [d for d in documents if d.status == "failed"]
            assert interrupted, f"killed {point.__name__}, yet no document was interrupted"
            assert all("interrupted" in (d.error or "") for d in interrupted)
            if point is between_commits:
                assert any(d.status == "ready" for d in documents)

    process = start_ingest(folder, data_dir, database_url)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()
    with open_index(data_dir) as index:
        assert_consistent(index)
        documents = index.documents()
        assert len(documents) == NOTES and {d.status for d in documents} == {"ready"}
        hit = index.search("Observation 123 year 2023", k=1, mode="bm25")[0]
        assert hit.title == "Note 123 on comets"
