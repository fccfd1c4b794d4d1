"""`LibraryLock`: one writer at a time for the whole library, whichever server it runs on.

The data directory's file lock (writer.py) keeps two processes of one machine from
changing that directory at once. Servers that share one PostgreSQL share no directory,
so a writer also takes a PostgreSQL advisory lock, held by a connection of its own: if
its process dies, PostgreSQL drops the connection and the lock with it. SQLite needs
none: its database is a file of the data directory, whose lock already makes one writer.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

# Advisory locks are per database: this key only ever meets PagedRAG's own writers.
LOCK_KEY = 0x5041_4745_4452_4147  # "PAGEDRAG"


class LibraryLock:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shared = engine.dialect.name == "postgresql"  # else nothing to take

    @contextmanager
    def holding(self, *, wait: bool) -> Iterator[bool]:
        """Hold the library's writer lock; without `wait`, yields False if another does."""
        if not self.shared:
            yield True
            return
        with self.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            if not _lock(connection, wait=wait):
                yield False
                return
            try:
                yield True
            finally:
                _unlock(connection)


def _lock(connection: Connection, *, wait: bool) -> bool:
    if wait:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        return True
    return bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}))


def _unlock(connection: Connection) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
    except DBAPIError:
        # NOTE: a broken connection no longer holds the lock (PostgreSQL let go when it
        # broke); one that might is closed, never pooled, which lets go too.
        connection.invalidate()
