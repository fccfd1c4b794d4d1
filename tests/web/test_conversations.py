"""The server-side chat history and the starter questions, without a browser or a model."""

import sqlite3

import pytest

from api.server.conversations import (
    DB_NAME,
    ConversationNotFoundError,
    ConversationStore,
    Message,
)
from api.server.suggestions import starter_questions
from api.server.wire.native import ConversationOut


def test_a_conversation_is_titled_by_its_first_question_and_survives_a_reopen(tmp_path) -> None:
    store = ConversationStore(tmp_path, open_tenant="default")
    chat = store.create(tenant="team")
    question = "How do zebras cross the Okavango delta in the dry season, and why? " * 2
    answer = Message("assistant", "In herds [1].", {"found": True, "citations": [{"n": 1}]})
    store.append(chat.id, [Message("user", question, {}), answer], tenant="team")
    store.close()

    reopened = ConversationStore(tmp_path, open_tenant="default")
    (listed,) = reopened.all(tenant="team")
    assert listed.title.startswith("How do zebras cross") and listed.title.endswith("…")
    assert len(listed.title) <= 60
    messages = ConversationOut.of(reopened.get(chat.id, tenant="team")).model_dump()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1] == {"role": "assistant", "content": "In herds [1].", **answer.details}
    reopened.delete(chat.id, tenant="team")
    assert reopened.all(tenant="team") == []
    with pytest.raises(ConversationNotFoundError):
        reopened.get(chat.id, tenant="team")


def test_another_tenants_conversation_is_not_found(tmp_path) -> None:
    store = ConversationStore(tmp_path, open_tenant="default")
    alices = store.create(tenant="alice", title="Alice's plans")
    store.create(tenant="bob", title="Bob's")

    assert [c.title for c in store.all(tenant="bob")] == ["Bob's"]
    for call in (
        lambda: store.get(alices.id, tenant="bob"),
        lambda: store.append(alices.id, [Message("user", "Read it", {})], tenant="bob"),
        lambda: store.delete(alices.id, tenant="bob"),
    ):
        with pytest.raises(ConversationNotFoundError):
            call()
    assert store.get(alices.id, tenant="alice").messages == []  # untouched by bob's calls


def test_a_file_from_before_tenants_gives_its_chats_to_the_open_tenant(tmp_path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as old:  # the schema before tenants
        old.executescript(
            """
            CREATE TABLE conversations (id INTEGER PRIMARY KEY, title VARCHAR(200),
                created_at DATETIME, updated_at DATETIME);
            CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER
                REFERENCES conversations(id) ON DELETE CASCADE, role VARCHAR(16),
                content TEXT, details TEXT, created_at DATETIME);
            INSERT INTO conversations VALUES (1, 'Kept', '2026-12-01', '2026-12-01');
            """
        )
    old.close()

    store = ConversationStore(tmp_path, open_tenant="default")

    assert [c.title for c in store.all(tenant="default")] == ["Kept"]
    assert store.all(tenant="someone-else") == []
    assert store.create(tenant="someone-else").id == 2


def test_starter_questions_come_from_the_document() -> None:
    passages = [
        "Migration Patterns\nZebras move north when the rains end.",
        "Zebras follow water. Predators follow zebras across the delta.",
    ]
    questions = starter_questions("Okavango field notes", passages)
    assert len(questions) == 3
    assert questions[0] == "Summarize “Okavango field notes”."
    assert "What does it say about Migration Patterns?" in questions
    assert any("zebras" in q for q in questions)
    chinese = starter_questions("报告", ["第一章 背景\n这是一份关于数据的报告。"])
    assert chinese[:2] == ["总结一下《报告》。", "第一章 背景是什么？"]
