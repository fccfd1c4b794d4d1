"""Two servers on one PostgreSQL library, each with a data directory of its own (its FAISS
and BM25 cache), as two machines behind a load balancer would be: each a real app under
uvicorn on its own port, with its own engine. What one changes, the other serves at its
next request: every search reads the collections' change numbers from the database first.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from api.server.settings import ServerSettings
from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from rag import RAG, RAGConfig
from tests.api.conftest import TEST_MODEL, free_port, serve_in_thread
from tests.api.test_cli import assert_one_line_error, pagedrag

pytestmark = pytest.mark.slow
ZEBRAS = b"Zebras of the Serengeti migrate north in July."
QUESTION = {"question": "When do zebras migrate?", "max_tokens": 4, "top_k": 3}


@contextmanager
def serving(data_dir: Path, library: str) -> Iterator[httpx.Client]:
    """A server on the library, answered by the test model; a client of it."""
    engine_config = EngineConfig(model=TEST_MODEL, kv_cache_memory=128 << 20, max_model_len=2048)
    # NOTE: the 135M stand-in's drafts are no queries to search with (tests/api/conftest.py).
    config = RAGConfig(check_support=False, draft_languages=frozenset())
    engine = AsyncLLMEngine.from_config(engine_config)
    rag = RAG(data_dir, database_url=library, engine=engine, config=config)
    settings = ServerSettings(data_dir=data_dir, database_url=library, engine=engine_config)
    try:
        with (
            serve_in_thread(settings, rag) as url,
            httpx.Client(base_url=url, timeout=300) as client,
        ):
            yield client
    finally:
        rag.close()


def cited(client: httpx.Client) -> set[int]:
    return {c["document_id"] for c in client.post("/ask", json=QUESTION).json()["citations"]}


def test_two_servers_serve_one_library(tmp_path: Path, postgres) -> None:
    library = postgres.new_database()
    with serving(tmp_path / "a", library) as a, serving(tmp_path / "b", library) as b:
        for client in (a, b):
            health = client.get("/health").json()
            assert health["database"] == {"kind": "postgresql", "status": "ok", "error": None}

        upload = [("files", ("zebras.txt", ZEBRAS, "text/plain"))]
        (zebras,) = a.post("/ingest?wait=true", files=upload).json()["document_ids"]
        assert zebras in cited(b)
        assert [d["id"] for d in b.get("/documents").json()] == [zebras]
        assert b.get(f"/documents/{zebras}/text").json()["text"] == ZEBRAS.decode()
        assert a.get(f"/documents/{zebras}/file").content == ZEBRAS
        kept_by_a = b.get(f"/documents/{zebras}/file")  # originals stay where they came in
        assert kept_by_a.status_code == 404 and "not kept by this server" in kept_by_a.text

        assert b.delete(f"/documents/{zebras}").status_code == 200
        assert zebras not in cited(a)  # at A's very next request
        assert a.get("/documents").json() == []

        # The database goes away: both say so, and a load balancer takes them out.
        with create_engine(postgres.url(), isolation_level="AUTOCOMMIT").connect() as admin:
            admin.execute(text(f"DROP DATABASE {make_url(library).database} WITH (FORCE)"))
        for client in (a, b):
            down = client.get("/health")
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "error" and body["database"]["kind"] == "postgresql"
            assert "does not exist" in body["database"]["error"]


def test_an_unreachable_database_stops_serve_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://pagedrag:s3cret@/library?host={tmp_path}&port=1"
    result = pagedrag(
        "serve",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path),
        "--database-url",
        url,
        "--model",
        TEST_MODEL,
    )
    assert_one_line_error(result, "cannot open database")
    assert "s3cret" not in result.stderr
