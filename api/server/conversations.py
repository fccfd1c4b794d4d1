"""Chat history for the web page: conversations and their messages, kept server-side.

A SQLite file of its own in the data directory (`conversations.sqlite`), separate from
the index's database: the index can be rebuilt or moved without losing anyone's chats.
Each conversation belongs to a tenant (the API key's; `auth.OPEN_TENANT` on a server
without keys): every call names one, and another tenant's conversation is not found.
"""

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ForeignKey, String, Text, create_engine, delete, event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from common.ids import storable

DB_NAME = "conversations.sqlite"
TITLE_CHARS = 60  # an automatic title is the first question, cut to this length


class _Base(DeclarativeBase):
    pass


class _Conversation(_Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    messages: Mapped[list["_Message"]] = relationship(
        cascade="all, delete-orphan", order_by="_Message.id"
    )


class _Message(_Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON: citations, usage, ...
    created_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "user" or "assistant"
    content: str
    details: dict[str, object]  # an assistant turn's citations, found, usage and timings


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    title: str
    updated_at: datetime
    messages: list[Message] | None  # None in listings, which leave the messages out


class ConversationNotFoundError(LookupError):
    def __init__(self, conversation_id: int) -> None:
        super().__init__(f"no conversation {conversation_id}; list them at GET /conversations")


class ConversationStore:
    """Conversations in a SQLite file; safe to call from several threads."""

    def __init__(self, data_dir: Path, *, open_tenant: str) -> None:
        """`open_tenant` owns the conversations of a file made before tenants existed."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self._engine = create_engine(
            f"sqlite:///{data_dir / DB_NAME}", connect_args={"check_same_thread": False}
        )
        event.listen(self._engine, "connect", _enable_foreign_keys)
        _Base.metadata.create_all(self._engine)
        _add_tenant_column(self._engine, open_tenant)
        self._lock = threading.Lock()  # SQLite takes one writer at a time anyway

    def close(self) -> None:
        self._engine.dispose()

    def all(self, *, tenant: str) -> list[Conversation]:
        """The tenant's conversations, the most recently used first, without messages."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(_Conversation)
                .where(_Conversation.tenant == tenant)
                .order_by(_Conversation.updated_at.desc())
            ).all()
            return [Conversation(r.id, r.title, r.updated_at, None) for r in rows]

    def create(self, *, tenant: str, title: str | None = None) -> Conversation:
        now = _now()
        with self._lock, Session(self._engine) as session:
            row = _Conversation(
                tenant=tenant, title=title or "New chat", created_at=now, updated_at=now
            )
            session.add(row)
            session.commit()
            return Conversation(row.id, row.title, row.updated_at, [])

    def get(self, conversation_id: int, *, tenant: str) -> Conversation:
        with Session(self._engine) as session:
            return _full(self._row(session, conversation_id, tenant))

    def append(self, conversation_id: int, messages: list[Message], *, tenant: str) -> Conversation:
        """Add messages; the first user message of an untitled chat becomes its title."""
        with self._lock, Session(self._engine) as session:
            row = self._row(session, conversation_id, tenant)
            now = _now()
            for message in messages:
                row.messages.append(
                    _Message(
                        role=message.role,
                        content=message.content,
                        details=json.dumps(message.details, ensure_ascii=False),
                        created_at=now,
                    )
                )
            if row.title == "New chat":
                row.title = _title_from(messages) or row.title
            row.updated_at = now
            session.commit()
            return _full(row)

    def delete(self, conversation_id: int, *, tenant: str) -> None:
        with self._lock, Session(self._engine) as session:
            self._row(session, conversation_id, tenant)
            session.execute(delete(_Conversation).where(_Conversation.id == conversation_id))
            session.commit()

    def _row(self, session: Session, conversation_id: int, tenant: str) -> _Conversation:
        """The tenant's conversation; another tenant's is as missing as one never made."""
        row = session.get(_Conversation, conversation_id) if storable(conversation_id) else None
        if row is None or row.tenant != tenant:
            raise ConversationNotFoundError(conversation_id)
        return row


def _full(row: _Conversation) -> Conversation:
    messages = [Message(m.role, m.content, json.loads(m.details)) for m in row.messages]
    return Conversation(row.id, row.title, row.updated_at, messages)


def _title_from(messages: list[Message]) -> str | None:
    question = next((m.content for m in messages if m.role == "user"), None)
    if question is None:
        return None
    words = " ".join(question.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _add_tenant_column(engine: Engine, open_tenant: str) -> None:
    """Give a file made before tenants existed its `tenant` column, every row the open
    server's tenant (whose conversations they were)."""
    if "tenant" in {column["name"] for column in inspect(engine).get_columns("conversations")}:
        return
    with engine.begin() as connection:
        connection.execute(
            text("ALTER TABLE conversations ADD COLUMN tenant VARCHAR(100) NOT NULL DEFAULT ''")
        )
        connection.execute(text("UPDATE conversations SET tenant = :t"), {"t": open_tenant})
        connection.execute(text("CREATE INDEX ix_conversations_tenant ON conversations (tenant)"))


def _enable_foreign_keys(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
