"""PagedRAG's own routes over real HTTP: ingest, ask (JSON and SSE), documents, errors, metrics."""

import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from api.server.jobs import STALE_UPLOAD_S, remove_stale_uploads
from tests.api.conftest import TEST_MODEL
from tests.indexer.documents import make_pdf

pytestmark = pytest.mark.slow
QUESTION = "How does PagedRAG share KV cache blocks between prompts?"


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_health_names_the_model(live_server) -> None:
    with live_server.client() as client:
        body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model"] == "smollm2:135m-instruct"
    assert body["engine"]["kv_blocks_total"] > 0
    assert body["database"] == {"kind": "sqlite", "status": "ok", "error": None}


def test_ask_answers_with_citations_and_a_repeat_hits_the_prefix_cache(live_server) -> None:
    request = {"question": QUESTION, "max_tokens": 8, "top_k": 3}
    with live_server.client() as client:
        first = client.post("/ask", json=request).json()
        second = client.post("/ask", json={**request, "question": QUESTION + " Explain."}).json()
    assert first["found"] is True
    assert first["answer"]
    assert [c["n"] for c in first["citations"]] == list(range(1, len(first["citations"]) + 1))
    assert {"document_id", "title", "page", "chunk_id", "text", "score"} <= set(
        first["citations"][0]
    )
    assert "How the PagedRAG engine reuses work" in {c["title"] for c in first["citations"]}
    assert first["usage"]["completion_tokens"] == 8
    assert set(first["timings"]) >= {"retrieve_ms", "ttft_ms", "total_ms"}
    assert first["timings"]["total_ms"] >= first["timings"]["ttft_ms"] > 0
    # The same passages: everything before the question comes from the cache.
    assert second["citations"] == first["citations"]
    assert second["usage"]["cached_tokens"] >= second["usage"]["prompt_tokens"] - 64


@pytest.mark.parametrize(
    ("history", "follow_up", "topic", "title"),
    [
        (
            [("user", "How does PagedRAG share KV cache blocks between prompts?"),
             ("assistant", "Prompts that start alike reuse the same blocks.")],
            "And how big is one of them?",
            "KV cache block",
            "How the PagedRAG engine reuses work",
        ),
        (
            [("user", "什么是检索增强生成？"),
             ("assistant", "一种让语言模型根据你自己的文档回答问题的方法。")],
            "它有什么好处？",
            "检索增强生成",
            "rag-zh.txt",  # a text file has no title: its name stands in
        ),
    ],
)  # fmt: skip
def test_a_follow_up_over_http_keeps_the_conversation_topic(
    live_server, history, follow_up, topic, title
) -> None:
    turns = [{"role": role, "content": content} for role, content in history]
    request = {"question": follow_up, "history": turns, "max_tokens": 4}
    with live_server.client() as client:
        answer = client.post("/ask", json=request).json()
    # The model's rewrite, or else the last user turn plus the follow-up: either way the
    # retriever sees what "it" was, and finds the passages about it.
    assert topic.casefold() in answer["standalone_question"].casefold()
    assert follow_up != answer["standalone_question"]
    assert title in {c["title"] for c in answer["citations"]}


def test_streamed_ask_sends_citations_then_tokens_then_done(live_server) -> None:
    request = {"question": QUESTION, "max_tokens": 6, "stream": True}
    with live_server.client() as client, client.stream("POST", "/ask", json=request) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[0] == "citations" and names[-1] == "done"
    assert set(names[1:-1]) == {"token"}
    done = events[-1][1]
    assert "".join(data["delta"] for name, data in events if name == "token") == done["answer"]
    assert events[0][1]["citations"] == done["citations"]
    assert done["usage"]["completion_tokens"] == 6


def test_nothing_relevant_is_not_found_without_calling_the_model(live_server) -> None:
    with live_server.client() as client:
        english = client.post("/ask", json={"question": "Who won the 1998 football world cup?"})
        chinese = client.post("/ask", json={"question": "一九九八年世界杯冠军是哪个国家？"})
    assert english.status_code == 200
    body = english.json()
    assert body["found"] is False
    assert body["answer"] == "I could not find this in your documents."
    assert body["citations"] == [] and body["usage"]["prompt_tokens"] == 0
    assert body["timings"]["ttft_ms"] is None
    assert chinese.json()["answer"] == "在您的文档中没有找到相关内容。"


def test_upload_a_pdf_follow_its_job_read_the_file_and_delete_it(live_server, tmp_path) -> None:
    pdf = make_pdf(
        tmp_path / "zebras.pdf",
        ["Intro page.", "Zebras in the Okavango delta migrate in the dry season."],
    )
    with live_server.client() as client:
        files = [("files", ("zebras.pdf", pdf.read_bytes(), "application/pdf"))]
        accepted = client.post("/ingest", files=files)
        assert accepted.status_code == 202  # the test server runs every upload in the background
        job_id = accepted.json()["job_id"]
        with client.stream("GET", f"/ingest/{job_id}/events") as response:
            events = sse_events(response)
        assert events[-1][0] == "done"
        job = client.get(f"/ingest/{job_id}").json()
        assert job["status"] == "done" and job["report"]["pages"] == 2
        assert job["phases"] == ["parse", "chunk", "embed"]  # even if the stream skipped one
        (document_id,) = job["document_ids"]
        info = client.get(f"/documents/{document_id}").json()
        assert info["page_count"] == 2 and info["status"] == "ready"
        original = client.get(f"/documents/{document_id}/file")
        assert original.content == pdf.read_bytes()
        assert original.headers["content-type"] == "application/pdf"
        extracted = client.get(f"/documents/{document_id}/text").json()
        (first, second) = extracted["pages"]
        assert second["page"] == 2 and first["end"] <= second["start"]
        assert "Okavango" in extracted["text"][second["start"] : second["end"]]
        assert "Okavango" not in extracted["text"][first["start"] : first["end"]]
        answer = client.post("/ask", json={"question": "When do zebras migrate?", "max_tokens": 4})
        cited = [c for c in answer.json()["citations"] if c["document_id"] == document_id]
        assert any(c["page"] == 2 and "Okavango" in c["text"] for c in cited)
        assert client.delete(f"/documents/{document_id}").json() == {"deleted": document_id}
        assert client.get(f"/documents/{document_id}").status_code == 404
        after = client.post("/ask", json={"question": "When do zebras migrate?", "max_tokens": 4})
        assert document_id not in {c["document_id"] for c in after.json()["citations"]}


def test_json_texts_and_a_batch_with_one_bad_file(live_server, tmp_path) -> None:
    with live_server.client() as client:
        texts = client.post(
            "/ingest",
            json={
                "documents": [
                    {"title": "Owls", "text": "Owls hunt at night.", "metadata": {"k": 1}}
                ],
                "collection": "birds",
            },
        ).json()
        assert len(texts["document_ids"]) == 1
        assert {"name": "birds", "documents": 1} in client.get("/collections").json()
        assert [d["title"] for d in client.get("/documents?collection=birds").json()] == ["Owls"]
        assert client.get(f"/documents/{texts['document_ids'][0]}/file").status_code == 404
        given = client.get(f"/documents/{texts['document_ids'][0]}/text").json()
        assert given["text"].endswith("Owls hunt at night.") and given["pages"] == []
        files = [
            ("files", ("good.md", b"# Lynx\nLynxes have tufted ears.", "text/markdown")),
            ("files", ("broken.pdf", b"%PDF-1.4 this is not a pdf", "application/pdf")),
            ("files", ("movie.mp4", b"\x00\x01", "video/mp4")),
        ]
        job = client.post("/ingest?wait=true", files=files, data={"collection": "cats"}).json()
    assert job["status"] == "done" and len(job["document_ids"]) == 1
    failed = {f["file"] for f in job["report"]["failures"]}
    assert "broken.pdf" in failed
    assert "movie.mp4" in failed or "movie.mp4" in job["report"]["skipped_unsupported"]


JSON = {"content-type": "application/json"}
EXE = ("a.exe", b"MZ", "application/x-msdownload")
BIG = ("big.txt", b"x" * (2 << 20), "text/plain")
SMALL = ("small.txt", b"Foxes are small.", "text/plain")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        (
            "post",
            "/ask",
            {"content": b"{not json", "headers": JSON},
            400,
        ),
        ("post", "/ask", {"json": {"question": ""}}, 422),
        ("post", "/ask", {"json": {"question": "x", "top_k": 0}}, 422),
        ("post", "/ask", {"json": {"question": "x", "document_ids": [10**20]}}, 400),
        ("post", "/ask", {"json": {"question": "hi", "history": [{"role": "x"}]}}, 422),
        ("get", "/documents/987654", {}, 404),
        ("get", "/documents/987654/text", {}, 404),
        ("delete", "/documents/987654", {}, 404),
        # past a database integer: still "no such document", not an overflow
        ("get", f"/documents/{10**20}", {}, 404),
        ("get", f"/documents/{10**20}/text", {}, 404),
        ("delete", f"/documents/{10**20}", {}, 404),
        ("get", f"/conversations/{10**20}", {}, 404),
        ("get", "/ingest/nope", {}, 404),
        (
            "post",
            "/ingest",
            {"files": [("files", EXE)]},
            415,
        ),
        ("post", "/ingest", {"content": b"plain", "headers": {"content-type": "text/plain"}}, 415),
        (
            "post",
            "/ingest",
            {"files": [("files", BIG)]},
            413,
        ),
        ("post", "/ingest", {"json": {"documents": []}}, 422),
        ("post", "/ingest?wait=true&background=true", {"files": [("files", SMALL)]}, 400),
    ],
)
def test_bad_requests_get_json_errors(live_server, method, path, kwargs, status) -> None:
    with live_server.client() as client:
        response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    message = response.json()["error"]["message"]
    assert message and "Traceback" not in message


def test_a_bug_is_a_500_that_shows_nothing_of_its_message(
    live_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare ValueError from deep inside is a bug, not the client's fault (it was a 400
    echoing its raw message); a user error keeps its category's status and its words."""

    def broken(*_: object) -> None:
        raise ValueError("cannot parse /srv/pagedrag/secret.db")

    monkeypatch.setattr(live_server.rag.index, "documents", broken)
    with live_server.client() as client:
        bug = client.get("/documents")
        user_error = client.post("/generate", json={"prompt": "Hi", "stop": [""]})
    assert bug.status_code == 500
    assert "secret" not in bug.text and "see the server log" in bug.json()["error"]["message"]
    assert user_error.status_code == 400
    assert "stop strings must not be empty" in user_error.json()["error"]["message"]


def test_metrics_report_requests_latency_and_the_prefix_cache(live_server) -> None:
    with live_server.client() as client:
        client.post("/ask", json={"question": QUESTION, "max_tokens": 3})
        client.get("/documents/987654")
        text = client.get("/metrics").text
    for name in (
        'pagedrag_http_requests_total{method="POST",route="/ask",status="200"}',
        'pagedrag_http_requests_total{method="GET",route="/documents/{document_id}",status="404"}',
        "pagedrag_time_to_first_token_seconds_bucket",
        "pagedrag_inter_token_latency_seconds_count",
        "pagedrag_prompt_tokens_total",
        "pagedrag_generation_tokens_total",
        "pagedrag_kv_blocks_used",
        "pagedrag_kv_blocks_total",
        "pagedrag_prefix_cache_queries_tokens_total",
        "pagedrag_prefix_cache_hits_tokens_total",
        "pagedrag_running_requests",
        "pagedrag_waiting_requests",
        "pagedrag_ingested_documents_total",
    ):
        assert name in text, name
    hits = [line for line in text.splitlines() if line.startswith("pagedrag_prefix_cache_hits")]
    assert float(hits[0].split()[-1]) > 0


def test_a_client_that_disconnects_mid_stream_frees_its_request(live_server) -> None:
    engine = live_server.rag.engine
    request = {"question": QUESTION, "max_tokens": 400, "stream": True}
    with live_server.client() as client, client.stream("POST", "/ask", json=request) as response:
        for line in response.iter_lines():
            if line.startswith("event: token"):
                break  # leave after the first token
    deadline = time.monotonic() + 10
    while engine.stats().num_running and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine.stats()
    assert stats.num_running == 0 and stats.num_waiting == 0
    assert stats.num_aborted_requests >= 1


def test_more_requests_than_the_engine_accepts_get_503(live_server) -> None:
    from tests.api.conftest import MAX_PENDING

    statuses: list[int] = []

    def ask() -> None:
        with live_server.client() as client:
            body = {"prompt": "Count to one hundred:", "max_tokens": 60, "temperature": 0}
            statuses.append(client.post("/generate", json=body).status_code)

    threads = [threading.Thread(target=ask) for _ in range(MAX_PENDING + 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(503) >= 1
    assert statuses.count(200) >= MAX_PENDING - 1
    assert set(statuses) <= {200, 503}


def test_the_openapi_schema_describes_every_route(live_server) -> None:
    with live_server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200
    expected = {
        "/ingest": {"post"},
        "/ingest/{job_id}": {"get"},
        "/ask": {"post"},
        "/documents": {"get"},
        "/documents/{document_id}": {"get", "delete"},
        "/documents/{document_id}/file": {"get"},
        "/collections": {"get"},
        "/health": {"get"},
        "/metrics": {"get"},
        "/v1/models": {"get"},
        "/v1/chat/completions": {"post"},
        "/v1/completions": {"post"},
        "/v1/embeddings": {"post"},
        "/api/generate": {"post"},
        "/api/chat": {"post"},
        "/api/embed": {"post"},
        "/api/tags": {"get"},
        "/api/version": {"get"},
        "/generate": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert paths[path][method].get("description") or paths[path][method].get("summary")
    assert "multipart/form-data" in paths["/ingest"]["post"]["requestBody"]["content"]


NOT_JSON = {  # routes whose success is a file, a stream or Prometheus text
    ("/metrics", "get"),
    ("/documents/{document_id}/file", "get"),
    ("/ingest/{job_id}/events", "get"),
    ("/auth/session", "post"),  # 204, no body
}


def test_every_route_declares_its_response_and_its_error_statuses(live_server) -> None:
    """What /openapi.json promises is what a client gets: a typed body for success, and
    every error status a route can answer, in the error shape of its API."""
    with live_server.client() as client:
        schema = client.get("/openapi.json").json()
        missing = client.get("/documents/99999999")
        ollama_missing = client.post("/api/chat", json={"model": "nope", "messages": []})
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "401", "403", "422", "500"} <= set(responses), (path, method)
            error_ref = "OllamaErrorBody" if path.startswith("/api/") else "ErrorBody"
            for status in ("400", "401", "403", "422", "500"):
                ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith(f"/{error_ref}"), (path, method, status)
            if (path, method) in NOT_JSON:
                continue
            success = next(responses[s] for s in ("200", "201") if s in responses)
            body = success["content"]["application/json"]["schema"]
            ref = body.get("$ref") or body.get("items", {}).get("$ref")
            assert ref and ref.split("/")[-1] in components, (path, method, body)
    assert "HTTPValidationError" not in components  # FastAPI's 422 shape, never sent here
    assert "#/$defs/" not in str(schema["paths"]["/ingest"])  # every reference resolves
    assert "404" in schema["paths"]["/documents/{document_id}"]["get"]["responses"]
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == set(components["ErrorDetail"]["properties"])
    assert ollama_missing.status_code == 404
    assert isinstance(ollama_missing.json()["error"], str)


def test_ask_searches_only_the_chosen_documents(live_server) -> None:
    with live_server.client() as client:
        documents = client.get("/documents").json()
        guide = next(d["id"] for d in documents if d["title"] == "PagedRAG user guide")
        body = {"question": QUESTION, "max_tokens": 2, "document_ids": [guide]}
        answer = client.post("/ask", json=body).json()
    assert answer["citations"]
    assert {c["document_id"] for c in answer["citations"]} == {guide}


def test_a_refused_upload_leaves_no_files_behind(live_server) -> None:
    """Sent in chunks, without a length: the limit is only found out while saving it."""
    uploads = live_server.data_dir / "uploads"
    before = set(uploads.glob("*")) if uploads.is_dir() else set()
    name, data, mime = BIG
    head = (
        f'--cut\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    body = head + data + b"\r\n--cut--\r\n"
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    headers = {"content-type": "multipart/form-data; boundary=cut"}
    with live_server.client() as client:
        assert client.post("/ingest", content=chunks, headers=headers).status_code == 413
    after = set(uploads.glob("*")) if uploads.is_dir() else set()
    assert after <= before


def test_upload_folders_a_killed_server_left_are_removed_once_stale(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    old, fresh = uploads / "old", uploads / "fresh"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "half.pdf").write_bytes(b"%PDF-1.4 cut off")
    an_hour_and_more = time.time() - STALE_UPLOAD_S - 60
    os.utime(old, (an_hour_and_more, an_hour_and_more))
    assert remove_stale_uploads(uploads) == 1
    assert not old.exists() and fresh.exists()  # a young one may be another server's job
    assert remove_stale_uploads(tmp_path / "none yet") == 0


COUNTING = ", ".join(str(n) for n in range(1, 30)) + ","
CONTINUE = f"Continue this list up to 500, numbers only: {COUNTING}"
ABANDONED = [
    ("/generate", {"prompt": COUNTING, "max_tokens": 400, "temperature": 0}),
    ("/v1/completions", {"prompt": COUNTING, "max_tokens": 400, "temperature": 0}),
    (
        "/v1/chat/completions",
        # NOTE: greedy, as every entry here: sampled, an answer may end in under a second
        {"messages": [{"role": "user", "content": CONTINUE}], "max_tokens": 400, "temperature": 0},
    ),
    (
        "/api/generate",
        {"model": TEST_MODEL, "prompt": COUNTING, "raw": True, "options": {"num_predict": 400}},
    ),
    (
        "/api/chat",
        {
            "model": TEST_MODEL,
            "messages": [{"role": "user", "content": CONTINUE}],
            "options": {"num_predict": 400, "temperature": 0},
        },
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("path", "body"), ABANDONED, ids=[path for path, _ in ABANDONED])
def test_a_client_that_leaves_aborts_its_generation_on_every_route(
    live_server, path: str, body: dict, stream: bool
) -> None:
    engine = live_server.rag.engine
    aborted = engine.stats().num_aborted_requests
    request = {**body, "stream": stream}
    if stream:  # read the first piece, then hang up
        with live_server.client() as client, client.stream("POST", path, json=request) as reply:
            assert reply.status_code == 200
            next(reply.iter_raw())
    else:  # give up waiting for the whole answer
        with live_server.client(timeout=1.5) as client, pytest.raises(httpx.ReadTimeout):
            client.post(path, json=request)
    deadline = time.monotonic() + 10
    while engine.stats().num_running and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine.stats()
    assert stats.num_running == 0 and stats.num_waiting == 0
    assert stats.num_aborted_requests > aborted
