"""`pagedrag ask`, `chat` and `serve` as a user runs them (real subprocesses, small model)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.server_process import get, stop, wait_until_ready
from rag import RAG
from tests.api.conftest import FOLLOW_UP_DIALOGUES, free_port
from tests.api.test_cli import ROOT, assert_one_line_error, pagedrag

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
MODEL = ("--model", "smollm2:135m-instruct", "--kv-cache-memory", "128M")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-data")
    with RAG(folder) as rag:
        rag.ingest([SAMPLES])
    return folder


def test_ask_streams_an_answer_and_lists_numbered_sources(data_dir) -> None:
    # The default model: the 135M stand-in's answers are seldom held by the passages, and
    # an unsupported answer is withdrawn (with no sources) as it should be.
    question = "How many tokens does a KV cache block hold in PagedRAG?"
    result = pagedrag(
        "ask", question, "--data-dir", str(data_dir), "--max-tokens", "48",
        "--kv-cache-memory", "256M",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources:")
    assert "16" in answer
    lines = [line.strip() for line in sources.strip().splitlines()]
    assert lines[0].lstrip("*").startswith("[1] ")  # numbered; "*" marks a cited one
    assert "How the PagedRAG engine reuses work" in sources
    assert any(line.startswith("*[") and "reuses work" in line for line in lines)  # it supports


def test_ask_says_not_found_for_an_off_topic_question(data_dir) -> None:
    result = pagedrag("ask", "Who won the 1998 world cup?", "--data-dir", str(data_dir), *MODEL)
    assert result.returncode == 0
    assert result.stdout.strip() == "I could not find this in your documents."


def test_chat_keeps_the_conversation_until_bye(data_dir) -> None:
    # The default model: the 135M stand-in's draft answers (rag/draft.py) are noise that
    # can move the passage its six-token answer leans on out of the prompt.
    turns = "What is a KV cache block?\nAnd how big is a KV cache block?\n/bye\n"
    options = ("--max-tokens", "12", "--kv-cache-memory", "256M")
    result = pagedrag("chat", "--data-dir", str(data_dir), *options, stdin=turns)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Sources:") == 2


@pytest.mark.parametrize(("turns", "facts", "source"), FOLLOW_UP_DIALOGUES)
def test_chat_follow_ups_keep_the_topic_in_either_language(
    data_dir, turns: list[str], facts: tuple[str, ...], source: str
) -> None:
    """The default model: the follow-up names nothing, the conversation does."""
    result = pagedrag(
        "chat", "--data-dir", str(data_dir), "--max-tokens", "48", "--kv-cache-memory", "256M",
        stdin="\n".join([*turns, "/bye"]) + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    follow_up = result.stdout.split(">>> ")[2]  # the prompt opens each turn
    answer, _, sources = follow_up.partition("Sources:")
    assert any(fact in answer for fact in facts), follow_up
    assert any(line.strip().startswith("*[") and source in line for line in sources.splitlines())


def test_ask_refuses_an_empty_question(data_dir) -> None:
    assert_one_line_error(pagedrag("ask", "  ", "--data-dir", str(data_dir), *MODEL), "empty")


def test_serve_refuses_a_port_in_use(data_dir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = pagedrag("serve", "--port", port, "--data-dir", str(data_dir), *MODEL)
    assert_one_line_error(result, "--port")


def test_ask_chat_and_serve_read_the_database_ingest_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--database-url and PAGEDRAG_DATABASE_URL reach every command, not only `ingest`."""
    data = ["--data-dir", str(tmp_path / "data")]
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ingested = pagedrag("ingest", str(SAMPLES), "--quiet", "--database-url", url, *data)
    assert ingested.returncode == 0, ingested.stderr
    monkeypatch.setenv("PAGEDRAG_DATABASE_URL", url)
    question = "How many tokens does a KV cache block hold?"
    asked = pagedrag("ask", question, "--max-tokens", "4", *data, *MODEL)
    chatted = pagedrag("chat", "--max-tokens", "4", *data, *MODEL, stdin=f"{question}\n/bye\n")
    assert asked.returncode == 0 and chatted.returncode == 0, asked.stderr + chatted.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *data, *MODEL],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until_ready(server, f"127.0.0.1:{port}", "/health", 300) is None
        status, body = get(f"127.0.0.1:{port}", "/documents")
    finally:
        stop(server)
    assert status == 200
    titles = {document["title"] for document in json.loads(body)}
    assert "How the PagedRAG engine reuses work" in titles
    assert not (tmp_path / "data" / "pagedrag.db").exists()  # no command fell back to SQLite
