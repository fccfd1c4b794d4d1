"""The load `bench.peers` puts on each server: its chat requests and the clients sending them.

Requests are OpenAI chat messages, not token ids, so that each server applies its own
chat template and tokenizer, as a user's client would have it do. Each is streamed
(`stream_options.include_usage`), so the client sees its own time to first token and
the server's token counts, cached tokens included where the server reports them.
"""

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.beir import BeirDataset, load_beir
from bench.retrieval_metrics import percentile
from bench.workload import SYSTEM

TokenCounter = Callable[[str], int]  # tokens of a text under the model's tokenizer
QUESTION_PREFIX = "Is this claim supported? "  # as bench.workload asks SciFact claims
PASSAGE_CHARS = 1200  # an abstract is cut to about 250 tokens, the size of a RAG chunk
NUM_SETS = 8
PER_SET = 4  # passages per set, and claims asked about each set
DECODE_TOKENS = 128  # the decode probe's answer length
WARM_UP_BODY: dict[str, Any] = {  # unrelated to the workload: warms code paths, not caches
    "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
    "max_tokens": 8,
    "temperature": 0,
    "stream": True,
    "stream_options": {"include_usage": True},
}
DECODE_BODY: dict[str, Any] = {  # a long answer, for single-stream decode speed
    "messages": [{"role": "user", "content": "Count from 1 to 300, separated by commas."}],
    "max_tokens": DECODE_TOKENS,
    "temperature": 0,
    "stream": True,
    "stream_options": {"include_usage": True},
}


@dataclass(frozen=True)
class ChatRequest:
    """One request of the workload: the same messages for every server."""

    index: int  # its place in the send order
    passage_set: int  # requests of one set share the system message, passages and all
    doc_ids: list[str]  # the SciFact abstracts, in prompt order
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class PassageSet:
    """Abstracts shown together, and the claims asked about them: one per abstract."""

    doc_ids: list[str]  # SciFact ids, in prompt order
    passages: list[str]  # "Title. Abstract", clipped
    claims: list[str]  # claims[i] is judged against passages[i] in BEIR's qrels


@dataclass(slots=True)
class Sample:
    """One streamed chat request as the client saw it."""

    ttft_s: float | None  # send -> first chunk with content; None if none came
    latency_s: float  # send -> end of the stream
    content_chunks: int  # chunks carrying text (a server may merge tokens into one)
    text: str  # the answer, for counting its tokens when the server reports no usage
    usage: dict[str, Any] | None  # the final usage chunk, if the server sent one
    error: str | None


@dataclass
class Figures:
    """What one run under load measured, from the client's side."""

    requests_ok: int
    requests_failed: int
    wall_s: float  # first request sent -> last stream ended
    output_tokens_per_s: float  # completion tokens of all answers / wall_s
    requests_per_s: float
    ttft_p50_s: float | None  # send -> first content chunk
    ttft_p95_s: float | None
    prompt_tokens: int | None  # None: the server reports no usage
    completion_tokens: int
    cached_tokens: int | None  # None: the server reports no prompt_tokens_details
    usage_reported: bool  # False: completion tokens were counted from the answers' text
    errors: list[str]  # the first few


# -- the workload ------------------------------------------------------------------------


def build_requests(corpus_dir: Path) -> list[ChatRequest]:
    """8 sets x 4 claims, round-robin over the sets (each set's k-th claim after every
    set's (k-1)-th): a prefix is reused after other prompts, not only right after itself."""
    sets = passage_sets(load_beir(corpus_dir))
    order = [(s, k) for k in range(PER_SET) for s in range(NUM_SETS)]
    return [
        ChatRequest(index, s, sets[s].doc_ids, chat_messages(sets[s].passages, sets[s].claims[k]))
        for index, (s, k) in enumerate(order)
    ]


def passage_sets(
    dataset: BeirDataset, num_sets: int = NUM_SETS, per_set: int = PER_SET
) -> list[PassageSet]:
    """Each claim with the first abstract judged for it, a different abstract for every
    claim, in the order of the queries file; `per_set` consecutive pairs make a set."""
    documents = {doc.doc_id: doc for doc in dataset.corpus}
    pairs: dict[str, str] = {}  # doc id -> the claim asked about it
    for query_id, claim in dataset.queries.items():
        doc_id = next(iter(dataset.qrels[query_id]))
        if doc_id in documents:
            pairs.setdefault(doc_id, claim)
    needed = num_sets * per_set
    if len(pairs) < needed:
        raise SystemExit(f"SciFact has {len(pairs)} claim/abstract pairs; {needed} are needed")
    chosen = list(pairs.items())[:needed]
    sets = []
    for start in range(0, needed, per_set):
        docs = [documents[doc_id] for doc_id, _ in chosen[start : start + per_set]]
        passages = [clip(f"{doc.title.rstrip('.')}. {doc.text}") for doc in docs]
        claims = [claim for _, claim in chosen[start : start + per_set]]
        sets.append(PassageSet([doc.doc_id for doc in docs], passages, claims))
    return sets


def chat_messages(passages: list[str], claim: str) -> list[dict[str, str]]:
    """System: the instructions and numbered passages; user: the question alone."""
    numbered = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, 1))
    return [
        {"role": "system", "content": f"{SYSTEM}\n\nPassages:\n{numbered}"},
        {"role": "user", "content": f"{QUESTION_PREFIX}{claim}"},
    ]


def clip(text: str, limit: int = PASSAGE_CHARS) -> str:
    """`text` cut at the last word boundary before `limit` characters."""
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def chat_body(model: str, request: ChatRequest, max_tokens: int) -> dict[str, Any]:
    """Greedy, streamed, usage in the last chunk: the same body for every server."""
    return {
        "model": model,
        "messages": request.messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


# -- the clients -------------------------------------------------------------------------


def stream_chat(host: str, body: dict[str, Any], timeout: float) -> Sample:
    """POST /v1/chat/completions and read the stream, giving up after `timeout` s."""
    connection = http.client.HTTPConnection(host, timeout=timeout)
    started = time.perf_counter()
    sample = Sample(None, 0.0, 0, "", None, None)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        if response.status != 200:
            sample.error = f"HTTP {response.status}: {response.read()[:300]!r}"
        ended = sample.error is not None
        for raw in response if not ended else ():
            if ended := read_line(raw.decode().strip(), sample, started):
                break
            if time.perf_counter() - started > timeout:
                sample.error = f"timed out after {timeout:.0f} s"
                break
        if not ended and sample.error is None:
            sample.error = "the stream ended without [DONE]"  # cut short: not an answer
    except (OSError, http.client.HTTPException, ValueError) as failure:
        sample.error = f"{type(failure).__name__}: {failure}"
    finally:
        connection.close()
    sample.latency_s = time.perf_counter() - started
    return sample


def read_line(line: str, sample: Sample, started: float) -> bool:
    """Fold one SSE line into `sample`; True at the end of the stream."""
    if not line.startswith("data:"):
        return False  # blank separators, `: ping` comments, `event:` lines
    payload = line.removeprefix("data:").strip()
    if payload == "[DONE]":
        return True
    chunk = json.loads(payload)
    if "error" in chunk:
        sample.error = str(chunk["error"])[:300]
        return True
    text = "".join(c.get("delta", {}).get("content") or "" for c in chunk.get("choices") or ())
    if text:
        sample.content_chunks += 1
        sample.text += text
        if sample.ttft_s is None:
            sample.ttft_s = time.perf_counter() - started
    if chunk.get("usage"):
        sample.usage = chunk["usage"]
    return False


def drive(
    host: str, bodies: list[dict], clients: int, deadline: float, timeout: float, grace: float
) -> list[Sample]:
    """`clients` closed-loop clients share the bodies, in order, until they or the time end.

    No request starts after `deadline` (time.monotonic); clients still waiting `grace` s
    later are left behind, and the caller's stopping the server ends their requests.
    """
    todo: queue.SimpleQueue[dict] = queue.SimpleQueue()
    for body in bodies:
        todo.put(body)
    samples: list[Sample] = []

    def client() -> None:
        while time.monotonic() < deadline:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                return
            samples.append(stream_chat(host, body, timeout))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + grace - time.monotonic()))
    return list(samples)


# -- what the clients measured ---------------------------------------------------------


def summarize(samples: list[Sample], wall: float, count: TokenCounter | None = None) -> Figures:
    """The run's figures; token counts from each answer's usage, else from its text."""
    ok = [s for s in samples if s.error is None]
    ttft = [s.ttft_s for s in ok if s.ttft_s is not None]
    usage = [s.usage for s in ok if s.usage]
    reported = bool(ok) and len(usage) == len(ok)
    completion = sum(completion_tokens(s, count) for s in ok)
    return Figures(
        requests_ok=len(ok),
        requests_failed=len(samples) - len(ok),
        wall_s=wall,
        output_tokens_per_s=completion / wall if wall > 0 else 0.0,
        requests_per_s=len(ok) / wall if wall > 0 else 0.0,
        ttft_p50_s=percentile(ttft, 50) if ttft else None,
        ttft_p95_s=percentile(ttft, 95) if ttft else None,
        prompt_tokens=sum(u.get("prompt_tokens", 0) for u in usage) if usage else None,
        completion_tokens=completion,
        cached_tokens=cached_tokens(usage),
        usage_reported=reported,
        errors=[s.error for s in samples if s.error][:5],
    )


def cached_tokens(usage: list[dict[str, Any]]) -> int | None:
    """Sum of `prompt_tokens_details.cached_tokens`; None if no answer reports it."""
    details = [u.get("prompt_tokens_details") or {} for u in usage]
    counts = [d["cached_tokens"] for d in details if "cached_tokens" in d]
    return sum(counts) if counts else None


def completion_tokens(sample: Sample, count: TokenCounter | None = None) -> int:
    """The server's count; else the answer re-tokenized (llama-cpp-python streams no usage,
    and merges tokens into one chunk while it checks for stop strings); else its chunks."""
    if sample.usage and "completion_tokens" in sample.usage:
        return int(sample.usage["completion_tokens"])
    return count(sample.text) if count else sample.content_chunks


def decode_rate(
    sample: Sample, count: TokenCounter | None = None
) -> tuple[int | None, float | None]:
    """(completion tokens, decode tok/s): the tokens after the first over the time after it."""
    if sample.error or sample.ttft_s is None:
        return None, None
    tokens = completion_tokens(sample, count)
    decode_s = sample.latency_s - sample.ttft_s
    return tokens, (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None
