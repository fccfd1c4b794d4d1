"""`/conversations`: the web page's chat history, kept server-side across reloads and browsers."""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.server.conversations import ConversationNotFoundError, ConversationStore, Message
from api.server.errors import ApiError

router = APIRouter(tags=["conversations"])


def get_store(request: Request) -> ConversationStore:
    store: ConversationStore = request.app.state.conversations
    return store


StoreDep = Annotated[ConversationStore, Depends(get_store)]


class NewConversation(BaseModel):
    title: str | None = Field(
        None, max_length=200, description="None: titled by its first question."
    )


class StoredMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=100_000)
    details: dict[str, Any] = Field(
        default_factory=dict, description="An answer's citations, found, usage and timings."
    )


class NewMessages(BaseModel):
    messages: list[StoredMessage] = Field(min_length=1)


@router.get("/conversations")
async def list_conversations(store: StoreDep) -> list[dict[str, Any]]:
    """Every conversation (id, title, updated_at), the most recent first."""
    return [c.to_dict() for c in await asyncio.to_thread(store.all)]


@router.post("/conversations", status_code=201)
async def create_conversation(body: NewConversation, store: StoreDep) -> dict[str, Any]:
    """Start an empty conversation."""
    return (await asyncio.to_thread(store.create, title=body.title)).to_dict()


@router.get("/conversations/{conversation_id}")
async def get_conversation(conversation_id: int, store: StoreDep) -> dict[str, Any]:
    """One conversation with its messages, oldest first."""
    return (await _found(asyncio.to_thread(store.get, conversation_id))).to_dict()


@router.post("/conversations/{conversation_id}/messages")
async def append_messages(
    conversation_id: int, body: NewMessages, store: StoreDep
) -> dict[str, Any]:
    """Append turns (a question and its answer); the first question titles the chat."""
    messages = [Message(m.role, m.content, m.details) for m in body.messages]
    return (await _found(asyncio.to_thread(store.append, conversation_id, messages))).to_dict()


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(conversation_id: int, store: StoreDep) -> dict[str, Any]:
    """Remove a conversation and its messages."""
    await _found(asyncio.to_thread(store.delete, conversation_id))
    return {"deleted": conversation_id}


async def _found(call: Any) -> Any:
    try:
        return await call
    except ConversationNotFoundError as error:
        raise ApiError(404, str(error)) from None
