"""Chat history for the web page: conversations and their messages, kept server-side.

A SQLite file of its own in the data directory (`conversations.sqlite`), separate from
the index's database: the index can be rebuilt or moved without losing anyone's chats.
"""

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ForeignKey, String, Text, create_engine, delete, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from common.ids import storable

DB_NAME = "conversations.sqlite"
TITLE_CHARS = 60  # an automatic title is the first question, cut to this length


class _Base(DeclarativeBase):
    pass


class _Conversation(_Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
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

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._engine = create_engine(
            f"sqlite:///{data_dir / DB_NAME}", connect_args={"check_same_thread": False}
        )
        event.listen(self._engine, "connect", _enable_foreign_keys)
        _Base.metadata.create_all(self._engine)
        self._lock = threading.Lock()  # SQLite takes one writer at a time anyway

    def close(self) -> None:
        self._engine.dispose()

    def all(self) -> list[Conversation]:
        """Every conversation, the most recently used first, without messages."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(_Conversation).order_by(_Conversation.updated_at.desc())
            ).all()
            return [Conversation(r.id, r.title, r.updated_at, None) for r in rows]

    def create(self, *, title: str | None = None) -> Conversation:
        now = _now()
        with self._lock, Session(self._engine) as session:
            row = _Conversation(title=title or "New chat", created_at=now, updated_at=now)
            session.add(row)
            session.commit()
            return Conversation(row.id, row.title, row.updated_at, [])

    def get(self, conversation_id: int) -> Conversation:
        with Session(self._engine) as session:
            return _full(self._row(session, conversation_id))

    def append(self, conversation_id: int, messages: list[Message]) -> Conversation:
        """Add messages; the first user message of an untitled chat becomes its title."""
        with self._lock, Session(self._engine) as session:
            row = self._row(session, conversation_id)
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

    def delete(self, conversation_id: int) -> None:
        with self._lock, Session(self._engine) as session:
            self._row(session, conversation_id)
            session.execute(delete(_Conversation).where(_Conversation.id == conversation_id))
            session.commit()

    def _row(self, session: Session, conversation_id: int) -> _Conversation:
        row = session.get(_Conversation, conversation_id) if storable(conversation_id) else None
        if row is None:
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


def _enable_foreign_keys(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
