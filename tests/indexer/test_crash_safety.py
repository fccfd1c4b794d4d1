"""Killing a real `pagedrag ingest` at any moment leaves database and indexes consistent."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from indexer import Index
from tests.indexer.conftest import assert_consistent

TOPICS = ["glaciers", "volcanoes", "tides", "comets", "forests", "deserts", "rivers", "storms"]


def write_corpus(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        (folder / f"note-{i:04d}.md").write_text(
            f"# Note {i} on {topic}\n\nObservation {i}: the {topic} changed in year {1900 + i}. "
            f"Field team {i % 17} measured it twice and recorded value {i * 37 % 1000}.\n"
        )


def start_ingest(folder: Path, data_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "api.cli", "ingest", str(folder), "--quiet"]
    command += ["--data-dir", str(data_dir)]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_killing_an_ingest_never_leaves_half_a_document(tmp_path):
    folder, data_dir = tmp_path / "notes", tmp_path / "data"
    write_corpus(folder, 700)
    seen_states = set()
    for delay in (6.0, 9.0, 12.0):  # into parsing, chunking, embedding or saving
        process = start_ingest(folder, data_dir)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        with Index(data_dir) as index:
            assert_consistent(index)
            statuses = [d.status for d in index.documents()]
            seen_states.add((statuses.count("ready"), statuses.count("failed")))
            interrupted = [d for d in index.documents() if d.status == "failed"]
            assert all("interrupted" in (d.error or "") for d in interrupted)
    assert any(failed for _, failed in seen_states), "no kill landed mid-ingest"

    process = start_ingest(folder, data_dir)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()
    with Index(data_dir) as index:
        assert_consistent(index)
        documents = index.documents()
        assert len(documents) == 700 and {d.status for d in documents} == {"ready"}
        hit = index.search("Observation 123 year 2023", k=1, mode="bm25")[0]
        assert hit.title == "Note 123 on comets"
