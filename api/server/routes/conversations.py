"""`/conversations`: the web page's chat history, kept server-side across reloads and browsers.

Each key sees its own tenant's conversations only; another's are 404, as if never made.
"""

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.server.conversations import ConversationNotFoundError, ConversationStore, Message
from api.server.deps import TenantDep
from api.server.errors import ApiError
from api.server.wire.errors import errors
from api.server.wire.native import ConversationOut, ConversationSummary, Deleted

router = APIRouter(tags=["conversations"])
Found = TypeVar("Found")


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
    details: dict[str, object] = Field(
        default_factory=dict, description="An answer's citations, found, usage and timings."
    )


class NewMessages(BaseModel):
    messages: list[StoredMessage] = Field(min_length=1)


@router.get("/conversations", response_model=list[ConversationSummary], responses=errors())
async def list_conversations(store: StoreDep, tenant: TenantDep) -> list[ConversationSummary]:
    """Every conversation of the key's tenant (id, title, updated_at), the most recent first."""
    listed = await asyncio.to_thread(store.all, tenant=tenant)
    return [ConversationSummary.of(c) for c in listed]


@router.post("/conversations", status_code=201, responses=errors(422))
async def create_conversation(
    body: NewConversation, store: StoreDep, tenant: TenantDep
) -> ConversationOut:
    """Start an empty conversation."""
    created = await asyncio.to_thread(store.create, tenant=tenant, title=body.title)
    return ConversationOut.of(created)


@router.get("/conversations/{conversation_id}", responses=errors(404, 422))
async def get_conversation(
    conversation_id: int, store: StoreDep, tenant: TenantDep
) -> ConversationOut:
    """One conversation with its messages, oldest first."""
    found = await _found(asyncio.to_thread(store.get, conversation_id, tenant=tenant))
    return ConversationOut.of(found)


@router.post("/conversations/{conversation_id}/messages", responses=errors(404, 422))
async def append_messages(
    conversation_id: int, body: NewMessages, store: StoreDep, tenant: TenantDep
) -> ConversationOut:
    """Append turns (a question and its answer); the first question titles the chat."""
    messages = [Message(m.role, m.content, m.details) for m in body.messages]
    appended = await _found(
        asyncio.to_thread(store.append, conversation_id, messages, tenant=tenant)
    )
    return ConversationOut.of(appended)


@router.delete("/conversations/{conversation_id}", responses=errors(404, 422))
async def delete_conversation(conversation_id: int, store: StoreDep, tenant: TenantDep) -> Deleted:
    """Remove a conversation and its messages."""
    await _found(asyncio.to_thread(store.delete, conversation_id, tenant=tenant))
    return Deleted(deleted=conversation_id)


async def _found(call: Awaitable[Found]) -> Found:
    try:
        return await call
    except ConversationNotFoundError as error:
        raise ApiError(404, str(error)) from None
