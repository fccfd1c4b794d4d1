"""Ollama's response objects: the final object of generate and chat (the last NDJSON line
of a stream), embeddings, tags and version. Durations are in nanoseconds, as Ollama's."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.server.wire.native import AttributionOut, CitationOut


class Version(BaseModel):
    version: str


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str
    family: str
    families: list[str] = Field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""


class LocalModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str = ""
    details: ModelDetails


class Tags(BaseModel):
    models: list[LocalModel]


class ShowResponse(BaseModel):
    """`/api/show`: what clients read before their first call (llama-index reads the
    context length from `model_info`, Open WebUI the `capabilities`)."""

    modelfile: str
    parameters: str = Field(description="the sampling defaults, one `name value` a line")
    template: str = Field(description="the chat template (Jinja, as the model ships it)")
    details: ModelDetails
    model_info: dict[str, str | int | float]
    capabilities: list[str] = Field(description="completion, or embedding")
    modified_at: str


class RunningModel(LocalModel):
    expires_at: str = Field(description="never unloaded while the server runs: far ahead")
    size_vram: int


class RunningModels(BaseModel):
    models: list[RunningModel]


class PullStatus(BaseModel):
    """The last line of a pull, and the answer of a copy or a deletion."""

    status: str = Field(description="success once done")


class LegacyEmbedding(BaseModel):
    embedding: list[float]


class OllamaToolCall(BaseModel):
    function: dict[str, Any] = Field(description="name, and arguments as an object")


class Message(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    thinking: str | None = Field(None, description="a reasoning model's thought")
    tool_calls: list[OllamaToolCall] | None = None


class _Final(BaseModel):
    model: str
    created_at: str
    done: Literal[True] = True
    done_reason: str = Field(description="stop or length; load or unload without a prompt")
    total_duration: int
    load_duration: int = 0
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int


class GenerateResponse(_Final):
    response: str
    thinking: str | None = Field(None, description="a reasoning model's thought")


class ChatResponse(_Final):
    message: Message
    citations: list[CitationOut] | None = Field(
        None, description="model pagedrag-rag only: the passages, numbered [n]"
    )
    attributions: list[AttributionOut] | None = Field(
        None, description="model pagedrag-rag only: uncited sentences and their passages"
    )


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int = 0
    prompt_eval_count: int
