"""`WriterLock` and `Writer`: who may change a data directory, and the library, right now.

One writer at a time: a thread lock within this process and an advisory file lock
across the processes of this data directory. Holding both is what a `Writer` proves;
only `WriterLock` hands one out, for the length of a `with` block, and every method that
changes the database or the saved indexes takes one, so "may write" is in its signature.
`writing` also takes the library's lock (store/library_lock.py), so that one writer at a
time changes documents whichever server it runs on; `try_writing` does not: it is for
bringing this directory's indexes in line with the database, which changes no document,
and should not wait for another server's long ingest. Readers never take the lock and
never wait for it; they ask `held_by_another_thread` to know whether the in-memory
indexes are being moved on under them.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.file_lock import exclusive
from indexer.store.library_lock import LibraryLock


class Writer:
    """Proof that this thread holds the writer lock (valid inside its `with` block)."""

    __slots__ = ("thread",)

    def __init__(self, thread: int) -> None:
        self.thread = thread


class WriterLock:
    def __init__(self, lock_path: Path, library: LibraryLock) -> None:
        self._threads = threading.Lock()  # one writer per process ...
        self._lock_path = lock_path  # ... and one across this directory's processes
        self.library = library  # ... and one across the library's servers
        self._holder: Writer | None = None

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """Be the one writer of this directory and of the library, waiting for the ones
        before to finish."""
        with self._acquire(wait=True) as writer, self.library.holding(wait=True):
            assert writer is not None  # waiting always ends in the lock
            yield writer

    @contextmanager
    def try_writing(self) -> Iterator[Writer | None]:
        """Be the one writer of this directory if nobody is; None at once if somebody is.
        The library's lock is not taken: `library.holding` before changing documents."""
        with self._acquire(wait=False) as writer:
            yield writer

    @property
    def held_by_this_thread(self) -> Writer | None:
        """The writer this thread holds, if it holds one (to reuse, never to store)."""
        holder = self._holder
        return holder if holder is not None and holder.thread == threading.get_ident() else None

    @property
    def held_by_another_thread(self) -> bool:
        holder = self._holder
        return holder is not None and holder.thread != threading.get_ident()

    @contextmanager
    def _acquire(self, *, wait: bool) -> Iterator[Writer | None]:
        if not self._threads.acquire(blocking=wait):
            yield None
            return
        try:
            with exclusive(self._lock_path, wait=wait) as acquired:
                if not acquired:
                    yield None
                    return
                self._holder = Writer(threading.get_ident())
                try:
                    yield self._holder
                finally:
                    self._holder = None
        finally:
            self._threads.release()
