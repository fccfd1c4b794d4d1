"""Generators loaded on demand by name and unloaded when idle: Ollama's `keep_alive` and
`OLLAMA_MAX_LOADED_MODELS`, for a server that answers for any model in its store.

The server's own model (`--model`) answers over the documents and stays loaded for the
server's life. Any other installed model loads when a request names it, stays while
requests use it, and unloads `keep_alive` seconds after its last one (the request's own,
else the server's). With `max_loaded` models in memory, the least recently used idle one
makes room; when none is idle, the request waits for one, up to `load_timeout`.

Everything here runs on the event loop, so looking a model up and holding it happen
without a pause in between: the reaper never unloads a model a request has taken.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from api.server.errors import ApiError
from api.server.settings import PoolSettings
from engine.async_engine import AsyncLLMEngine
from engine.engine_stats import EngineStats
from engine.library import CATALOG, ModelStore, library_name
from rag.prompt import PromptBuilder

logger = logging.getLogger(__name__)
REAP_INTERVAL_S = 0.25  # how often idle models are looked at (and busy ones touched)


class ServerDefault:
    """`use` without a keep_alive of its own: the server's applies."""


SERVER_DEFAULT = ServerDefault()


@dataclass(eq=False)
class LoadedModel:
    """One generator in memory, and what keeps it there."""

    name: str  # its public name, as responses and `/api/ps` show it
    engine: AsyncLLMEngine
    prompts: PromptBuilder  # its chat template, as token ids
    pinned: bool = False  # the server's own model: never unloaded
    keep_alive: float | None = None  # seconds idle before unloading; None: never
    holds: int = 0  # requests that took it and have not yet handed their work to the engine
    last_used: float = field(default_factory=time.monotonic)  # while busy: the latest look

    @property
    def busy(self) -> bool:
        return self.holds > 0 or self.engine.num_unfinished > 0

    def expires_in(self) -> float | None:
        """Seconds until it unloads if nothing uses it meanwhile; None: never."""
        if self.pinned or self.keep_alive is None:
            return None
        idle_for = 0.0 if self.busy else time.monotonic() - self.last_used
        return max(0.0, self.keep_alive - idle_for)


@dataclass(eq=False)
class _Load:
    """A model being loaded, and how many requests wait for it (each then holds it)."""

    task: "asyncio.Task[LoadedModel]"
    waiters: int = 0


class ModelPool:
    """The generators in memory: the server's own, and the store's models on demand.

    Args:
        own: the server's model (its engine belongs to the RAG pipeline).
        store: where other models are looked up by name; only its installed models load.
        load: builds the engine of a store model (by its store name), off the event loop.
        settings: how many stay loaded, and for how long.
    """

    def __init__(
        self,
        own: LoadedModel,
        store: ModelStore,
        load: Callable[[str], AsyncLLMEngine],
        settings: PoolSettings,
    ) -> None:
        self.own = own
        self.store = store
        self.settings = settings
        self._load_engine = load
        self._loaded: dict[str, LoadedModel] = {own.name: own}
        self._loading: dict[str, _Load] = {}
        self._reaper: asyncio.Task[None] | None = None

    def loaded(self) -> list[LoadedModel]:
        """The models in memory, the server's own first."""
        return list(self._loaded.values())

    def engine_stats(self) -> dict[str, EngineStats]:
        """Each loaded model's engine figures, by the model's name (for /metrics)."""
        return {model.name: model.engine.stats() for model in self.loaded()}

    def name_of(self, requested: str | None) -> str:
        """The public name a request's model resolves to (tags optional); 404 if it is
        neither loaded nor installed."""
        if requested is None:
            return self.own.name
        # NOTE: `ollama cp` names come back with Ollama's default tag (`my-model:latest`).
        names = dict.fromkeys(
            [requested, library_name(requested), requested.removesuffix(":latest")]
        )
        for name in names:
            if name in self._loaded or self._installed(name):
                return name
        name = library_name(requested)
        available = ", ".join(sorted({*self._loaded, *(m.name for m in self.store.installed())}))
        if name in CATALOG:
            raise ApiError(
                404,
                f"model {requested!r} not found: it is not installed; pull it first "
                f"(`pagedrag pull {name}` or POST /api/pull); available: {available}",
            )
        raise ApiError(
            404, f"model {requested!r} not found: it does not exist here; available: {available}"
        )

    @contextlib.asynccontextmanager
    async def use(
        self, requested: str | None, keep_alive: float | ServerDefault | None = SERVER_DEFAULT
    ) -> AsyncIterator[LoadedModel]:
        """The model a request names, loaded if need be and held until the block ends
        (hand the generation to its engine inside the block: from then on the engine's
        own unfinished requests keep it loaded)."""
        name = self.name_of(requested)
        if name == self.own.name and keep_alive == 0:
            raise ApiError(
                400,
                f"{name} is the server's own model (it answers over the documents) and "
                "stays loaded; start the server with another --model to free its memory",
            )
        model = await self._take(name)
        try:
            if not model.pinned:
                model.keep_alive = (
                    self.settings.keep_alive
                    if isinstance(keep_alive, ServerDefault)
                    else keep_alive
                )
            yield model
        finally:
            model.holds -= 1
            model.last_used = time.monotonic()

    async def unload(self, name: str) -> bool:
        """Unload an idle model now (`keep_alive: 0` without a prompt, `ollama stop`);
        False if it was not loaded. 400 for the server's own or a busy one."""
        model = self._loaded.get(name)
        if model is None:
            return False
        if model.pinned:
            raise ApiError(400, f"{name} is the server's own model and stays loaded")
        if model.busy:
            raise ApiError(409, f"{name} is answering requests; try again when they are done")
        await self._unload(model)
        return True

    def start(self) -> None:
        """Start unloading idle models (call on the server's event loop)."""
        self._reaper = asyncio.create_task(self._reap(), name="pagedrag-model-reaper")

    async def close(self) -> None:
        """Stop the reaper and unload every model but the server's own (its RAG's)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for load in list(self._loading.values()):
            load.task.cancel()
        for model in self.loaded():
            if not model.pinned:
                await self._unload(model)

    # -- loading and unloading ------------------------------------------------------------

    def _installed(self, name: str) -> bool:
        """Only names in the store load on demand: a request never names a path."""
        looks_like_a_path = "/" in name or "\\" in name or name.startswith((".", "~"))
        return not looks_like_a_path and self.store.is_installed(name)

    async def _take(self, name: str) -> LoadedModel:
        model = self._loaded.get(name)
        if model is not None:
            model.holds += 1  # NOTE: no await since the lookup, so the reaper cannot interleave
            return model
        load = self._loading.get(name)
        if load is None:
            load = _Load(asyncio.create_task(self._load(name), name=f"pagedrag-load-{name}"))
            self._loading[name] = load
        load.waiters += 1
        try:
            return await asyncio.shield(load.task)
        except BaseException:
            if load.task.done() and not load.task.cancelled() and load.task.exception() is None:
                load.task.result().holds -= 1  # loaded: this request's hold was handed over
            else:
                load.waiters -= 1
            raise

    async def _load(self, name: str) -> LoadedModel:
        load = self._loading[name]
        try:
            await self._make_room(name)
            logger.info("loading %s", name)
            started = time.monotonic()
            try:
                engine = await asyncio.to_thread(self._load_engine, name)
                prompts = await asyncio.to_thread(PromptBuilder, engine.tokenizer)
            except Exception as error:
                logger.exception("could not load %s", name)
                raise ApiError(500, f"could not load {name}: {error}") from None
            model = LoadedModel(name, engine, prompts, keep_alive=self.settings.keep_alive)
            model.holds = load.waiters  # NOTE: handed over with no await in between
            self._loaded[name] = model
            logger.info("loaded %s in %.1f s", name, time.monotonic() - started)
            return model
        finally:
            del self._loading[name]

    async def _make_room(self, name: str) -> None:
        """Unload idle models until one more fits; wait (bounded) while all are busy."""
        deadline = time.monotonic() + self.settings.load_timeout
        while len(self._loaded) + len(self._loading) > self.settings.max_loaded:
            idle = [m for m in self._loaded.values() if not m.pinned and not m.busy]
            if idle:
                await self._unload(min(idle, key=lambda m: m.last_used))
                continue
            movable = [m for m in self._loaded.values() if not m.pinned]
            if not movable and len(self._loading) == 1:
                raise ApiError(
                    503,
                    f"cannot load {name}: the server keeps at most "
                    f"{self.settings.max_loaded} model(s) loaded (--max-loaded-models) and "
                    "its own model takes the only place",
                )
            if time.monotonic() > deadline:
                raise ApiError(
                    503,
                    f"cannot load {name}: all {len(self._loaded)} loaded models are busy "
                    f"(--max-loaded-models {self.settings.max_loaded}); retry later",
                )
            await asyncio.sleep(REAP_INTERVAL_S)

    async def _unload(self, model: LoadedModel) -> None:
        if self._loaded.get(model.name) is not model:
            return
        del self._loaded[model.name]  # NOTE: first, so no request takes it from here on
        await asyncio.to_thread(model.engine.shutdown)  # its memory goes with the last reference
        logger.info("unloaded %s", model.name)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            try:
                await self._unload_expired()
            except Exception:  # a failed unload must not stop the next ones
                logger.exception("unloading an idle model failed")

    async def _unload_expired(self) -> None:
        for model in self.loaded():
            if model.busy:
                model.last_used = time.monotonic()
            elif model.expires_in() == 0:
                await self._unload(model)
