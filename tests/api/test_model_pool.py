"""Models loaded on demand: the pool with tiny random-weight models in a store of its own
(real engines, loaded in a fraction of a second), then a live server that loads a real
library model when the official clients name it."""

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from api.server.errors import ApiError
from api.server.model_pool import REAP_INTERVAL_S, LoadedModel, ModelPool
from api.server.settings import PoolSettings
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from engine.errors import EngineClosedError
from engine.library import ModelStore
from engine.library.store import MANIFEST
from engine.sampling_params import SamplingParams
from rag.prompt import PromptBuilder
from tests.api.conftest import TEST_MODEL, serve_in_thread
from tests.tiny_model import save_tiny_llama

TINY = ("tiny-a", "tiny-b", "tiny-c")
OTHER_MODEL = "qwen2.5-coder:0.5b-instruct"  # installed by `make models` for the tests


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A PagedRAG home whose store holds three tiny models and the server's own."""
    home = tmp_path_factory.mktemp("pool-home")
    store = ModelStore.default(home)
    for name in (*TINY, "tiny-own"):
        directory = store.path_for(name)
        directory.mkdir(parents=True)
        save_tiny_llama(directory)
        (directory / MANIFEST).write_text(json.dumps({"name": name, "architecture": "llama"}))
    return home


def engine_config(home: Path, name: str) -> EngineConfig:
    return EngineConfig(model=name, home=home, kv_cache_memory=8 << 20, max_model_len=256)


class Loads:
    """The pool's loader, counting what it loaded."""

    def __init__(self, home: Path, delay: float = 0.0) -> None:
        self.home, self.delay, self.names = home, delay, []

    def __call__(self, name: str) -> AsyncLLMEngine:
        self.names.append(name)
        time.sleep(self.delay)  # a slow disk: lets a test act while the load runs
        return AsyncLLMEngine.from_config(engine_config(self.home, name))


def run_pool(home: Path, settings: PoolSettings, test: Callable, loads: Loads | None = None):
    """Run `test(pool, loads)` on an event loop with a started pool, closing it after."""
    loads = loads or Loads(home)

    async def main():
        own_engine = AsyncLLMEngine.from_config(engine_config(home, "tiny-own"))
        own = LoadedModel("tiny-own", own_engine, PromptBuilder(own_engine.tokenizer), pinned=True)
        pool = ModelPool(own, ModelStore.default(home), loads, settings)
        pool.start()
        try:
            return await test(pool, loads)
        finally:
            await pool.close()
            own_engine.shutdown()

    return asyncio.run(main())


def loaded_names(pool: ModelPool) -> list[str]:
    return [m.name for m in pool.loaded()]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def answer(model: LoadedModel, max_tokens: int = 4) -> str:
    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    return (await model.engine.finish([1, 2, 3], params)).text


def test_concurrent_requests_for_a_model_load_it_once_and_hold_it(home) -> None:
    async def test(pool, loads):
        async def ask() -> tuple[LoadedModel, int]:
            async with pool.use("tiny-a") as model:
                holds = model.holds
                await answer(model)
                return model, holds

        (first, holds_a), (second, holds_b) = await asyncio.gather(ask(), ask())
        assert first is second and loads.names == ["tiny-a"]
        assert max(holds_a, holds_b) == 2 and first.holds == 0
        assert loaded_names(pool) == ["tiny-own", "tiny-a"]

    run_pool(home, PoolSettings(), test)


def test_an_idle_model_unloads_after_its_keep_alive_and_its_engine_closes(home) -> None:
    async def test(pool, loads):
        async with pool.use("tiny-a") as model:
            await answer(model)
        assert 0 < model.expires_in() <= 0.6
        await asyncio.sleep(0.3)
        assert "tiny-a" in loaded_names(pool)  # not before its keep_alive
        await wait_until(lambda: "tiny-a" not in loaded_names(pool))
        with pytest.raises(EngineClosedError):
            await answer(model)
        async with pool.use("tiny-a") as again:  # named again: loaded again
            assert again is not model and await answer(again)
        assert loads.names == ["tiny-a", "tiny-a"]

    run_pool(home, PoolSettings(keep_alive=0.6), test)


def test_keep_alive_per_request_zero_unloads_negative_keeps(home) -> None:
    async def test(pool, loads):
        async with pool.use("tiny-a", keep_alive=None) as kept:
            await answer(kept)
        async with pool.use("tiny-b", keep_alive=0) as dropped:
            await answer(dropped)
        await wait_until(lambda: "tiny-b" not in loaded_names(pool))
        await asyncio.sleep(0.5)  # longer than the server's keep_alive
        assert loaded_names(pool) == ["tiny-own", "tiny-a"] and kept.expires_in() is None

    run_pool(home, PoolSettings(keep_alive=0.2), test)


def test_a_model_is_not_unloaded_while_its_engine_still_answers(home) -> None:
    async def test(pool, loads):
        async with pool.use("tiny-a", keep_alive=0) as model:
            params = SamplingParams(temperature=0, max_tokens=200, ignore_eos=True)
            stream = model.engine.generate([1, 2, 3], params)
            first = await anext(stream)
        # The request has left the block; only the engine's own work keeps the model.
        await asyncio.sleep(3 * REAP_INTERVAL_S)
        outputs = [first, *[output async for output in stream]]
        assert outputs[-1].finished and len(outputs[-1].token_ids) == 200
        await wait_until(lambda: "tiny-a" not in loaded_names(pool))

    run_pool(home, PoolSettings(), test)


def test_a_full_pool_unloads_the_least_recently_used_idle_model(home) -> None:
    async def test(pool, loads):
        for name in ("tiny-a", "tiny-b", "tiny-a", "tiny-c"):
            async with pool.use(name) as model:
                await answer(model)
        assert loaded_names(pool) == ["tiny-own", "tiny-a", "tiny-c"]  # b was used least lately
        assert loads.names == ["tiny-a", "tiny-b", "tiny-c"]

    run_pool(home, PoolSettings(max_loaded=3), test)


def test_a_full_pool_of_busy_models_waits_for_one_then_refuses(home) -> None:
    async def test(pool, loads):
        async with pool.use("tiny-a"):
            started = time.monotonic()
            with pytest.raises(ApiError) as refused:
                async with pool.use("tiny-b"):
                    pass
            assert refused.value.status == 503 and "busy" in refused.value.message
            assert time.monotonic() - started >= 0.5

        async def release_soon() -> None:
            async with pool.use("tiny-a"):
                await asyncio.sleep(0.3)

        releasing = asyncio.create_task(release_soon())
        await asyncio.sleep(0.05)
        async with pool.use("tiny-b") as model:  # waits for a to go idle, then takes its place
            assert await answer(model)
        await releasing
        assert loaded_names(pool) == ["tiny-own", "tiny-b"]

    run_pool(home, PoolSettings(max_loaded=2, load_timeout=0.5), test)


def test_the_servers_own_model_stays_and_cannot_be_pushed_out(home) -> None:
    async def test(pool, loads):
        with pytest.raises(ApiError) as full:
            async with pool.use("tiny-a"):
                pass
        assert full.value.status == 503 and "--max-loaded-models" in full.value.message
        with pytest.raises(ApiError) as dropped:
            async with pool.use("tiny-own", keep_alive=0):
                pass
        assert dropped.value.status == 400 and "server's own model" in dropped.value.message
        with pytest.raises(ApiError) as unloaded:
            await pool.unload("tiny-own")
        assert unloaded.value.status == 400
        async with pool.use(None) as own:  # a request naming no model gets the server's
            assert own.pinned and await answer(own)
        assert loads.names == []

    run_pool(home, PoolSettings(max_loaded=1), test)


def test_names_take_ollamas_default_tag_and_never_a_path(home) -> None:
    async def test(pool, loads):
        assert pool.name_of("tiny-a:latest") == "tiny-a" and pool.name_of(None) == "tiny-own"
        for name in ("../models/tiny-a", "/etc/passwd", str(ModelStore.default(home).root)):
            with pytest.raises(ApiError) as refused:
                pool.name_of(name)
            assert refused.value.status == 404 and "does not exist here" in refused.value.message
        with pytest.raises(ApiError) as missing:
            pool.name_of("smollm2")  # in the catalog, not in this store
        assert "pull it first" in missing.value.message

    run_pool(home, PoolSettings(), test)


def test_a_request_that_leaves_during_the_load_holds_nothing(home) -> None:
    async def test(pool, loads):
        async def ask() -> None:
            async with pool.use("tiny-a", keep_alive=0):
                pass

        leaving = asyncio.create_task(ask())
        await asyncio.sleep(0.1)  # inside the load
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await wait_until(lambda: "tiny-a" in loaded_names(pool))  # the load itself finishes
        (model,) = [m for m in pool.loaded() if m.name == "tiny-a"]
        assert model.holds == 0
        await wait_until(lambda: "tiny-a" not in loaded_names(pool), timeout=400)

    run_pool(home, PoolSettings(keep_alive=0.2), test, Loads(home, delay=0.5))


# -- over HTTP, with a real library model --------------------------------------------------


@pytest.mark.slow
def test_clients_name_another_installed_model_and_it_loads_on_demand(live_server) -> None:
    settings = replace(
        live_server.settings,
        engine=replace(live_server.settings.engine, kv_cache_memory=256 << 20, max_model_len=4096),
        models=PoolSettings(max_loaded=2, keep_alive=60),
    )
    with serve_in_thread(settings, live_server.rag) as url:
        oll = ollama.Client(host=url, timeout=300)
        shown = oll.show(OTHER_MODEL)  # read from its files: not loaded for this
        assert shown.modelinfo["qwen2.context_length"] == 32768 and "tools" in shown.capabilities
        assert [m.model for m in oll.ps().models] == [TEST_MODEL]

        options = {"num_predict": 8, "temperature": 0}
        reply = oll.generate(model="qwen2.5-coder:0.5b", prompt="Say hi.", options=options)
        assert reply.model == "qwen2.5-coder:0.5b" and reply.eval_count == 8
        running = {m.model: m.expires_at for m in oll.ps().models}
        assert list(running) == [TEST_MODEL, OTHER_MODEL] and running[TEST_MODEL].year > 2100
        assert 30 < (running[OTHER_MODEL] - datetime.now(UTC)).total_seconds() <= 61
        metrics = httpx.get(f"{url}/metrics", timeout=30).text  # every loaded engine's figures
        for name in (TEST_MODEL, OTHER_MODEL):
            assert f'pagedrag_kv_blocks_total{{model="{name}"}}' in metrics

        oai = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        chat = oai.chat.completions.create(
            model=OTHER_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert chat.model == OTHER_MODEL and chat.usage.completion_tokens == 4

        stopped = oll.generate(model=OTHER_MODEL, keep_alive=0)  # what `ollama stop` sends
        assert stopped.done_reason == "unload"
        assert [m.model for m in oll.ps().models] == [TEST_MODEL]
        with pytest.raises(ollama.ResponseError) as refused:
            oll.generate(model=TEST_MODEL, keep_alive=0)
        assert refused.value.status_code == 400 and "server's own model" in refused.value.error
        bad = httpx.post(
            f"{url}/api/generate", json={"model": TEST_MODEL, "keep_alive": "soon"}, timeout=30
        )
        assert bad.status_code == 400 and "keep_alive must be" in bad.json()["error"]
        loaded = oll.generate(model=OTHER_MODEL, keep_alive="1m")  # `ollama run` preloads so
        assert loaded.done_reason == "load" and len(oll.ps().models) == 2
