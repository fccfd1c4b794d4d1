"""`WriterLock`: who may change a data directory right now.

One writer at a time: a thread lock within this process and an advisory file lock
across processes. Every change to the database or to the saved indexes happens inside
`writing()`. Readers never take it and never wait for it; they ask `held_by_another_thread`
to know whether the in-memory indexes are being moved on under them.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.file_lock import exclusive


class WriterLock:
    def __init__(self, lock_path: Path) -> None:
        self._threads = threading.Lock()  # one writer per process ...
        self._lock_path = lock_path  # ... and one across processes
        self._holder: int | None = None  # the thread of this process now writing

    @contextmanager
    def writing(self, *, wait: bool = True) -> Iterator[bool]:
        """Be the one writer; without `wait`, yields False at once if someone else is."""
        if not self._threads.acquire(blocking=wait):
            yield False
            return
        try:
            with exclusive(self._lock_path, wait=wait) as acquired:
                if not acquired:
                    yield False
                    return
                self._holder = threading.get_ident()
                try:
                    yield True
                finally:
                    self._holder = None
        finally:
            self._threads.release()

    @property
    def held_by_this_thread(self) -> bool:
        return self._holder == threading.get_ident()

    @property
    def held_by_another_thread(self) -> bool:
        holder = self._holder
        return holder is not None and holder != threading.get_ident()
