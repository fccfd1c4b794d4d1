"""One database per data directory: SQLite by default, any SQLAlchemy URL by configuration."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from indexer.errors import IndexerError
from indexer.store.migrations import upgrade
from indexer.store.models import Base, Setting


class Database:
    def __init__(self, url: str) -> None:
        try:
            self.engine: Engine = create_engine(url, **_engine_options(url))
        except (ArgumentError, ImportError) as error:
            raise IndexerError(f"cannot use database URL {url!r}: {error}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _tune_sqlite)
        try:
            Base.metadata.create_all(self.engine)
            upgrade(self.engine)
        except OperationalError as error:
            raise IndexerError(f"cannot open database {url!r}: {error.orig}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def sqlite_in(cls, data_dir: Path) -> "Database":
        return cls(f"sqlite:///{data_dir / 'pagedrag.db'}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def get_setting(self, key: str) -> str | None:
        with self.session() as session:
            return session.scalar(select(Setting.value).where(Setting.key == key))

    def set_setting(self, key: str, value: str) -> None:
        with self.session() as session:
            session.merge(Setting(key=key, value=value))

    def close(self) -> None:
        self.engine.dispose()


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several threads (the HTTP server) share the engine; SQLite serialises writes itself.
        return {"connect_args": {"check_same_thread": False, "timeout": 30}}
    return {"pool_pre_ping": True}


def _tune_sqlite(connection: Any, _record: Any) -> None:
    """WAL so readers never block the writer; foreign keys so chunks die with their document."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
