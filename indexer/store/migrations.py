"""Bring a database made by an older PagedRAG up to the current tables, in place.

`create_all` adds missing tables but never changes an existing one; each step here
changes one table, checks first whether it is needed (so every open may call it, from
several processes at once), and runs in one transaction.
"""

import sqlite3

from sqlalchemy import Connection, Engine, LargeBinary, MetaData, Table, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.schema import CreateTable

from indexer.errors import IndexerError
from indexer.store.models import DEFAULT_TENANT, Collection


def upgrade(engine: Engine) -> None:
    """Every step a database may still need."""
    _add_collection_tenants(engine)
    _add_chunk_vectors(engine)


def _add_chunk_vectors(engine: Engine) -> None:
    """Chunks gained their vector (None for the old ones: embedded again when next needed).
    Another process may add it first: its error is then this step done."""
    if _has_column(engine, "chunks", "vector"):
        return
    binary = LargeBinary().compile(dialect=engine.dialect)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE chunks ADD COLUMN vector {binary}"))
    except (OperationalError, ProgrammingError):
        if not _has_column(engine, "chunks", "vector"):
            raise


def _add_collection_tenants(engine: Engine) -> None:
    """Collections gained an owner: their names became unique per tenant, and a
    collection made before is `DEFAULT_TENANT`'s (whose it was on an open server)."""
    if _has_tenant(engine):
        return
    if engine.dialect.name == "sqlite":
        _rebuild_sqlite_collections(engine)
    else:
        _alter_collections(engine)


def _has_tenant(bind: Engine | Connection) -> bool:
    return _has_column(bind, "collections", "tenant")


def _has_column(bind: Engine | Connection, table: str, column: str) -> bool:
    return column in {found["name"] for found in inspect(bind).get_columns(table)}


def _rebuild_sqlite_collections(engine: Engine) -> None:
    """SQLite cannot drop a UNIQUE constraint: the table is made again and copied, as
    SQLite's manual says to (foreign keys off, so the documents keep pointing at it)."""
    table: Table = Collection.__table__  # type: ignore[assignment]  # a Table, typed looser
    fresh = table.to_metadata(MetaData(), name="collections_new")
    create = str(CreateTable(fresh).compile(dialect=engine.dialect))
    connection = engine.raw_connection()
    sqlite = connection.driver_connection
    assert sqlite is not None  # an open connection
    isolation = sqlite.isolation_level
    try:
        sqlite.isolation_level = None  # BEGIN and COMMIT below are ours
        cursor = sqlite.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute("BEGIN IMMEDIATE")  # one migrating process at a time
        try:
            columns = {row[1] for row in cursor.execute("PRAGMA table_info(collections)")}
            if "tenant" not in columns:
                broken = len(cursor.execute("PRAGMA foreign_key_check").fetchall())
                last_id = cursor.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'collections'"
                ).fetchone()
                cursor.execute(create)
                cursor.execute(
                    "INSERT INTO collections_new (id, tenant, name, created_at, generation) "
                    "SELECT id, ?, name, created_at, generation FROM collections",
                    (DEFAULT_TENANT,),
                )
                cursor.execute("DROP TABLE collections")
                cursor.execute("ALTER TABLE collections_new RENAME TO collections")
                if last_id is not None:  # ids of deleted collections stay dead
                    cursor.execute(
                        "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'collections'",
                        last_id,
                    )
                if len(cursor.execute("PRAGMA foreign_key_check").fetchall()) > broken:
                    raise RuntimeError("collections migration broke a foreign key")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as error:  # e.g. another process held the database too long
        raise IndexerError(f"cannot upgrade the library's database: {error}") from None
    finally:
        sqlite.isolation_level = isolation  # the pooled connection goes back as it came
        connection.close()


def _alter_collections(engine: Engine) -> None:
    """PostgreSQL (and other servers): a column, and the unique name traded for the pair."""
    with engine.begin() as connection:
        connection.execute(text("LOCK TABLE collections IN ACCESS EXCLUSIVE MODE"))
        if _has_tenant(connection):
            return
        old_unique = [
            constraint["name"]
            for constraint in inspect(connection).get_unique_constraints("collections")
            if constraint["column_names"] == ["name"]
        ]
        connection.execute(
            text(
                "ALTER TABLE collections ADD COLUMN tenant VARCHAR(100) NOT NULL "
                f"DEFAULT '{DEFAULT_TENANT}'"
            )
        )
        for name in old_unique:
            connection.execute(text(f'ALTER TABLE collections DROP CONSTRAINT "{name}"'))
        connection.execute(
            text(
                "ALTER TABLE collections ADD CONSTRAINT uq_collection_tenant_name "
                "UNIQUE (tenant, name)"
            )
        )
