"""Wire formats for streams: server-sent events (OpenAI, PagedRAG) and NDJSON (Ollama)."""

import json

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str | None, data: object) -> str:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


def ndjson(data: object) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"
