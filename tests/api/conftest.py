"""A live server on 127.0.0.1 with the small library model and the real default embedder."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.server.app import create_app
from api.server.settings import ServerSettings
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from rag import RAG, RAGConfig

TEST_MODEL = "smollm2:135m-instruct"
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
MAX_PENDING = 6  # small, so the overload test can reach it
# Two-turn dialogues over data/samples whose follow-up names nothing the conversation
# does not: (turns, facts of which the second answer holds one, the supporting title).
FOLLOW_UP_DIALOGUES = [
    pytest.param(
        ["How does PagedRAG share KV cache blocks between prompts?", "And how big is one of them?"],
        ("16",),
        "How the PagedRAG engine reuses work",
        id="english",
    ),
    pytest.param(
        ["什么是检索增强生成？", "它有什么好处？"],
        ("出处", "引用", "重新训练", "编造"),  # any of the three benefits the file lists
        "rag-zh.txt",  # a text file has no title: its name stands in
        id="chinese",
    ),
]


@dataclass
class LiveServer:
    url: str
    rag: RAG
    data_dir: Path
    settings: ServerSettings

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 120, **kwargs})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_in_thread(settings: ServerSettings, rag: RAG) -> Iterator[str]:
    """Run the real app under uvicorn on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, rag), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve_samples(
    data_dir: Path, engine_config: EngineConfig, max_pending: int = 256, **settings: object
) -> Iterator[LiveServer]:
    """The test model over data/samples, served on a free loopback port."""
    engine = AsyncLLMEngine.from_config(engine_config, max_pending_requests=max_pending)
    # NOTE: the 135M stand-in's few-token fragments are not answers to judge, nor drafts
    # to search with (its near ties flip with the kernels' last bits, and the passages
    # with them); the answer check and the draft are tested with the default model
    # (tests/rag).
    config = RAGConfig(check_support=False, draft_languages=frozenset())
    rag = RAG(data_dir, engine=engine, config=config)
    try:
        rag.ingest([SAMPLES])
        server_settings = ServerSettings(
            data_dir=data_dir, engine=EngineConfig(model=engine_config.model), **settings
        )
        with serve_in_thread(server_settings, rag) as url:
            yield LiveServer(url, rag, data_dir, server_settings)
    finally:
        rag.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    with serve_samples(
        tmp_path_factory.mktemp("server-data"),
        EngineConfig(model=TEST_MODEL, kv_cache_memory=256 << 20, max_model_len=4096),
        max_pending=MAX_PENDING,
        max_upload_bytes=1 << 20,
        background_ingest_bytes=0,
    ) as server:
        yield server
