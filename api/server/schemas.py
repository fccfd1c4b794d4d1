"""Request bodies of PagedRAG's own routes (the compatible APIs keep theirs beside them)."""

from typing import Literal

from pydantic import BaseModel, Field

from rag.question import MAX_QUESTION_CHARS, MAX_TOP_K


class ChatMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="What to ask.")
    collection: str | None = Field(None, description="Search only this collection.")
    document_ids: list[int] | None = Field(None, description="Search only these documents.")
    history: list[ChatMessage] = Field(
        default_factory=list, description="Earlier turns; a follow-up is rewritten with them."
    )
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="Passages given to the model.")
    max_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = Field(False, description="Server-sent events instead of one JSON answer.")


class TextDocument(BaseModel):
    text: str = Field(min_length=1)
    title: str | None = None
    metadata: dict[str, object] = Field(default_factory=dict)


class IngestTextsRequest(BaseModel):
    documents: list[TextDocument] = Field(min_length=1)
    collection: str | None = None


def inline_schema(model: type[BaseModel]) -> dict[str, object]:
    """The model's JSON schema with its `#/$defs/...` references replaced by what they
    name: in a route's `openapi_extra` they would point at nothing in /openapi.json."""
    schema: dict[str, object] = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    assert isinstance(definitions, dict)

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved = resolve(schema)
    assert isinstance(resolved, dict)
    return resolved
