"""One database per library: SQLite in the data directory by default, any SQLAlchemy URL
by configuration (PostgreSQL for a library that several servers share)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, select, text
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from indexer.errors import IndexerError
from indexer.store.library_lock import LibraryLock
from indexer.store.migrations import upgrade
from indexer.store.models import Base, Setting

LIBRARY_ID = "library_id"  # the setting that names this database's library
CONNECT_TIMEOUT_S = 10  # a server that does not answer is an error, not a hang


class Database:
    def __init__(self, url: str) -> None:
        try:
            self.engine: Engine = create_engine(url, **_engine_options(url))
        except (ArgumentError, ImportError) as error:
            raise IndexerError(f"cannot use database URL {_shown(url)!r}: {error}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _tune_sqlite)
        try:
            Base.metadata.create_all(self.engine)
            upgrade(self.engine)
        except OperationalError as error:
            hint = "" if url.startswith("sqlite") else "; is its server up and the URL right?"
            raise IndexerError(
                f"cannot open database {_shown(url)!r}: {_first_line(error)}{hint}"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.library_lock = LibraryLock(self.engine)
        self.library_id = self._library_id()

    @property
    def kind(self) -> str:
        """SQLAlchemy's name for the database: "sqlite", "postgresql", ..."""
        return self.engine.dialect.name

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

    def error(self) -> str | None:
        """Why the database cannot be reached now; None when it answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            return _first_line(error)
        return None

    def close(self) -> None:
        self.engine.dispose()

    def _library_id(self) -> str:
        """A name made once per database: index files built from another library (another
        database at the same data directory) are told apart from this one's."""
        found = self.get_setting(LIBRARY_ID)
        if found is not None:
            return found
        try:
            with self.session() as session:
                session.add(Setting(key=LIBRARY_ID, value=uuid.uuid4().hex))
        except IntegrityError:
            pass  # another process named it first
        named = self.get_setting(LIBRARY_ID)
        if named is None:
            raise RuntimeError("the library id was neither found nor stored")
        return named


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several threads (the HTTP server) share the engine; SQLite serialises writes itself.
        return {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def _shown(url: str) -> str:
    """The URL as messages may show it: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _first_line(error: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's SQL echo and links."""
    message = str(getattr(error, "orig", None) or error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def _tune_sqlite(connection: Any, _record: Any) -> None:
    """WAL so readers never block the writer; foreign keys so chunks die with their document."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
