"""Documents given as text (`Index.ingest_texts`): checked once, before any write."""

import json
from dataclasses import dataclass
from typing import Any

from indexer.errors import IndexerError


@dataclass(frozen=True)
class TextDocument:
    """A document given as text (`Index.ingest_texts`), checked."""

    text: str
    title: str
    metadata: dict[str, Any]


def checked_texts(documents: Any) -> list[TextDocument]:
    """`{"text", "title"?, "metadata"?}` objects as `TextDocument`s, or the first problem."""
    return [_checked_text(position, item) for position, item in enumerate(documents)]


def _checked_text(position: int, item: Any) -> TextDocument:
    if not isinstance(item, dict):
        raise IndexerError(f"document {position}: expected an object with a 'text' field")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise IndexerError(f"document {position}: 'text' must be a non-empty string")
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        raise IndexerError(f"document {position}: 'title' must be a string")
    metadata = item.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise IndexerError(f"document {position}: 'metadata' must be an object")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError):
        raise IndexerError(f"document {position}: 'metadata' must be JSON-serialisable") from None
    return TextDocument(text, (title or text.strip().split("\n", 1)[0])[:200], metadata)
