"""The server-side chat history and the starter questions, without a browser or a model."""

import pytest

from api.server.conversations import ConversationNotFoundError, ConversationStore, Message
from api.server.suggestions import starter_questions
from api.server.wire.native import ConversationOut


def test_a_conversation_is_titled_by_its_first_question_and_survives_a_reopen(tmp_path) -> None:
    store = ConversationStore(tmp_path)
    chat = store.create()
    question = "How do zebras cross the Okavango delta in the dry season, and why? " * 2
    answer = Message("assistant", "In herds [1].", {"found": True, "citations": [{"n": 1}]})
    store.append(chat.id, [Message("user", question, {}), answer])
    store.close()

    reopened = ConversationStore(tmp_path)
    (listed,) = reopened.all()
    assert listed.title.startswith("How do zebras cross") and listed.title.endswith("…")
    assert len(listed.title) <= 60
    messages = ConversationOut.of(reopened.get(chat.id)).model_dump()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1] == {"role": "assistant", "content": "In herds [1].", **answer.details}
    reopened.delete(chat.id)
    assert reopened.all() == []
    with pytest.raises(ConversationNotFoundError):
        reopened.get(chat.id)


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
