"""`POST /ask`: a question over the documents, answered with citations (JSON or SSE)."""

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.server.auth import tenant_of
from api.server.chat import final_answer, rag_events
from api.server.deps import StateDep
from api.server.disconnect import unless_disconnected
from api.server.errors import client_message
from api.server.schemas import AskRequest
from api.server.streaming import SSE_HEADERS, sse
from api.server.wire.errors import errors
from api.server.wire.native import AskResponse, citations
from rag.answer import AnswerEvent, CitationsEvent, TokenEvent

router = APIRouter(tags=["ask"])
logger = logging.getLogger(__name__)


@router.post(
    "/ask",
    response_model=AskResponse,
    responses=errors(404, 422, 503) | {200: {"content": {"text/event-stream": {}}}},
)
async def ask(
    body: AskRequest, request: Request, state: StateDep
) -> AskResponse | StreamingResponse:
    """Answer a question over the documents, with numbered citations.

    Returns `{"answer", "citations": [{"n", "document_id", "title", "page", "chunk_id",
    "text", "score"}], "usage": {"prompt_tokens", "completion_tokens", "cached_tokens"},
    "timings": {"retrieve_ms", "ttft_ms", "total_ms"}, "found"}`. `found` is false when
    nothing relevant was retrieved (the model is not called) or when the passages do not
    support what the model wrote: the answer is then the "not found" reply.
    `cited` lists the [n] the model wrote; `attributions` (`{"start", "end", "n",
    "share"}`) give each sentence it left uncited the passage that supports it, so a
    client can show a marker at `end`. With `"stream": true`, server-sent events:
    `citations` first, then `token` events (`{"delta"}`), then `done` with the whole
    answer, usage and timings.
    """
    events = rag_events(state, body, tenant_of(request))
    first = await anext(events)  # errors in validation or retrieval are HTTP errors, not events
    if not body.stream:
        answer = await unless_disconnected(request, final_answer(events))
        return AskResponse.of(answer)
    return StreamingResponse(
        _sse(first, events), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _sse(first: AnswerEvent, events: AsyncIterator[AnswerEvent]) -> AsyncIterator[str]:
    yield _encode(first)
    try:
        async for event in events:
            yield _encode(event)
    except Exception as error:  # the status line is sent: report the failure in the stream
        logger.exception("streamed answer failed")
        yield sse("error", {"message": client_message(error)})


def _encode(event: AnswerEvent) -> str:
    if isinstance(event, CitationsEvent):
        passages = [c.model_dump() for c in citations(event.citations)]
        body = {"citations": passages, "standalone_question": event.standalone_question}
        return sse("citations", body)
    if isinstance(event, TokenEvent):
        return sse("token", {"delta": event.delta})
    return sse("done", AskResponse.of(event.answer).model_dump())
