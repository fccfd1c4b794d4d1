"""Ingestion jobs: uploads parsed, chunked and embedded on a worker thread, with progress.

A job owns the folder its uploads were saved to and removes it when done (the index
keeps its own copy of every original file). A job is its tenant's: another tenant asking
for it finds nothing. One worker runs jobs in order: the index
takes one writer at a time anyway, and searches keep running meanwhile.
"""

import itertools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from api.server.errors import client_message
from indexer.records import IngestReport

logger = logging.getLogger(__name__)

KEPT_JOBS = 200  # finished jobs remembered for GET /ingest/{id}
UPLOADS = "uploads"  # the data directory's folder of upload folders, one per request
# An upload folder this old at start-up belongs to no job: its server died mid-upload or
# mid-job. Younger ones may be another server's (several can share a data directory).
STALE_UPLOAD_S = 3600


def remove_stale_uploads(uploads: Path, older_than_s: float = STALE_UPLOAD_S) -> int:
    """Remove the upload folders a killed server left behind; returns how many."""
    removed = 0
    for folder in uploads.glob("*") if uploads.is_dir() else ():
        try:
            stale = time.time() - folder.stat().st_mtime > older_than_s
        except FileNotFoundError:
            continue  # its job just finished
        if stale and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # finished; some files may still have failed (see the report)
    FAILED = "failed"  # the job itself could not run


@dataclass
class IngestJob:
    id: str
    files: list[str]  # the uploaded file names, in order
    tenant: str  # whose upload it is
    status: JobStatus = JobStatus.QUEUED
    phase: str | None = None  # "parse", "chunk" or "embed" while running
    done: int = 0  # progress within the phase
    total: int = 0
    phases: list[str] = field(default_factory=list)  # every phase begun so far, in order
    report: IngestReport | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    version: int = 0  # bumped on every change, so a progress stream can tell news from old


# ingest(paths, progress) -> report; the server binds the collection and the index.
IngestFn = Callable[[list[Path], Callable[[str, int, int], None]], IngestReport]
FinishedHook = Callable[[IngestJob], None]


class IngestJobs:
    def __init__(self, on_finished: FinishedHook | None = None) -> None:
        self._jobs: dict[str, IngestJob] = {}
        self._queue: queue.Queue[tuple[IngestJob, list[Path], Path, IngestFn] | None] = (
            queue.Queue()
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._on_finished = on_finished
        self._worker = threading.Thread(target=self._work, name="pagedrag-ingest", daemon=True)
        self._worker.start()

    def submit(
        self, paths: list[Path], upload_dir: Path, ingest: IngestFn, tenant: str
    ) -> IngestJob:
        """Queue the tenant's files; `upload_dir` is removed once the job ends."""
        with self._lock:
            job = IngestJob(
                id=f"ingest-{next(self._ids)}", files=[p.name for p in paths], tenant=tenant
            )
            self._jobs[job.id] = job
            self._forget_old()
        self._queue.put((job, paths, upload_dir, ingest))
        return job

    def get(self, job_id: str, tenant: str) -> IngestJob | None:
        """The tenant's job of that id; None for another tenant's, as for one never made."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            job, paths, upload_dir, ingest = item
            self._run(job, paths, ingest)
            shutil.rmtree(upload_dir, ignore_errors=True)

    def _run(self, job: IngestJob, paths: list[Path], ingest: IngestFn) -> None:
        def progress(phase: str, done: int, total: int) -> None:
            if phase not in job.phases:
                job.phases.append(phase)
            job.phase, job.done, job.total = phase, done, total
            job.version += 1

        job.status = JobStatus.RUNNING
        job.version += 1
        try:
            job.report = ingest(paths, progress)
            job.status = JobStatus.DONE
        except Exception as error:  # a job's failure is reported, never raised into the worker
            logger.exception("ingestion job %s failed", job.id)
            job.error = client_message(error)
            job.status = JobStatus.FAILED
        job.phase = None
        job.version += 1
        job.finished.set()
        if self._on_finished is not None:
            self._on_finished(job)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished.is_set()]
        for job in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del self._jobs[job.id]
