"""The peer benchmark's bookkeeping: its requests, the stream reader, figures and table.

No server and no peer is started: everything here runs on made-up samples.
"""

import argparse
import json
from pathlib import Path

import pytest

from bench.beir import BeirDataset, BeirDocument
from bench.peer_client import (
    NUM_SETS,
    PER_SET,
    QUESTION_PREFIX,
    Sample,
    build_requests,
    chat_body,
    chat_messages,
    clip,
    decode_rate,
    passage_sets,
    read_line,
    summarize,
)
from bench.peer_report import Run, report, spread
from bench.peer_setup import parse_names
from bench.peers import names
from bench.workload import SYSTEM


def dataset(pairs: int, shared_doc: bool = False) -> BeirDataset:
    """`pairs` claims, claim i judged against abstract i (or all against abstract 0)."""
    corpus = [BeirDocument(f"d{i}", f"Title {i}.", f"Text of abstract {i}.") for i in range(pairs)]
    queries = {f"q{i}": f"claim {i}" for i in range(pairs)}
    qrels = {f"q{i}": {"d0" if shared_doc else f"d{i}": 1} for i in range(pairs)}
    return BeirDataset(corpus, queries, qrels)


def write_beir(directory: Path, pairs: int) -> Path:
    data = dataset(pairs)
    with (directory / "corpus.jsonl").open("w") as corpus:
        for doc in data.corpus:
            corpus.write(json.dumps({"_id": doc.doc_id, "title": doc.title, "text": doc.text}))
            corpus.write("\n")
    with (directory / "queries.jsonl").open("w") as queries:
        for query_id, text in data.queries.items():
            queries.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    rows = [f"{q}\t{d}\t1" for q, docs in data.qrels.items() for d in docs]
    (directory / "qrels-test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows))
    return directory


def sample(ttft: float | None = 0.5, latency: float = 2.0, **usage: object) -> Sample:
    return Sample(ttft, latency, 10, "one two three", dict(usage) or None, None)


# -- the workload ------------------------------------------------------------------------


def test_each_set_pairs_its_claims_with_its_own_abstracts_in_qrels_order() -> None:
    sets = passage_sets(dataset(40))
    assert len(sets) == NUM_SETS
    assert sets[1].doc_ids == ["d4", "d5", "d6", "d7"]
    assert sets[1].claims == ["claim 4", "claim 5", "claim 6", "claim 7"]
    assert sets[1].passages[0] == "Title 4. Text of abstract 4."  # the title's period once


def test_an_abstract_judged_for_two_claims_is_used_once() -> None:
    with pytest.raises(SystemExit, match="1 claim/abstract pairs"):
        passage_sets(dataset(40, shared_doc=True))


def test_requests_go_round_robin_over_the_sets_and_share_each_sets_system_message(
    tmp_path: Path,
) -> None:
    requests = build_requests(write_beir(tmp_path, 32))
    assert len(requests) == NUM_SETS * PER_SET
    assert [r.passage_set for r in requests[:10]] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert [r.index for r in requests] == list(range(32))
    same_set = [r for r in requests if r.passage_set == 3]
    assert len({r.messages[0]["content"] for r in same_set}) == 1
    assert len({r.messages[1]["content"] for r in same_set}) == PER_SET


def test_messages_number_the_passages_and_ask_the_claim_alone() -> None:
    system, user = chat_messages(["alpha", "beta"], "the sky is green")
    assert system == {
        "role": "system",
        "content": f"{SYSTEM}\n\nPassages:\n[1] alpha\n\n[2] beta",
    }
    assert user == {"role": "user", "content": f"{QUESTION_PREFIX}the sky is green"}


def test_clip_cuts_long_text_at_a_word_boundary() -> None:
    assert clip("short text", 100) == "short text"
    assert clip("one two three four", 12) == "one two ..."


def test_every_request_body_is_greedy_streamed_and_asks_for_usage(tmp_path: Path) -> None:
    body = chat_body("m", build_requests(write_beir(tmp_path, 32))[0], 64)
    assert body["temperature"] == 0 and body["max_tokens"] == 64 and body["model"] == "m"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


# -- the stream reader -------------------------------------------------------------------


def test_the_first_content_chunk_sets_ttft_and_the_usage_chunk_is_kept() -> None:
    got = Sample(None, 0.0, 0, "", None, None)
    role = {"choices": [{"delta": {"role": "assistant", "content": ""}}]}
    text = {"choices": [{"delta": {"content": "Yes"}}], "usage": None}
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    lines = [": ping", "", f"data: {json.dumps(role)}", f"data: {json.dumps(text)}"]
    lines += [f"data: {json.dumps(text)}", f"data: {json.dumps(usage)}"]
    assert not any(read_line(line, got, started=0.0) for line in lines)
    assert got.content_chunks == 2 and got.text == "YesYes" and got.ttft_s is not None
    assert got.usage == usage["usage"]
    assert read_line("data: [DONE]", got, started=0.0)


def test_an_error_chunk_ends_the_stream_with_its_message() -> None:
    got = Sample(None, 0.0, 0, "", None, None)
    assert read_line('data: {"error": {"message": "too long"}}', got, started=0.0)
    assert got.error is not None and "too long" in got.error


# -- figures -----------------------------------------------------------------------------


def test_summary_adds_tokens_and_cached_tokens_over_the_answered_requests() -> None:
    details = {"cached_tokens": 32}
    samples = [
        sample(0.2, prompt_tokens=100, completion_tokens=64, prompt_tokens_details=details),
        sample(0.4, prompt_tokens=100, completion_tokens=36, prompt_tokens_details=details),
        Sample(None, 0.1, 0, "", None, "HTTP 503: busy"),
    ]
    figures = summarize(samples, wall=10.0)
    assert (figures.requests_ok, figures.requests_failed) == (2, 1)
    assert figures.output_tokens_per_s == pytest.approx(10.0)
    assert figures.requests_per_s == pytest.approx(0.2)
    assert figures.ttft_p50_s == pytest.approx(0.3)
    assert (figures.prompt_tokens, figures.cached_tokens) == (200, 64)
    assert figures.usage_reported and figures.errors == ["HTTP 503: busy"]


def test_a_server_that_reports_no_cached_tokens_gets_none_not_zero() -> None:
    figures = summarize([sample(prompt_tokens=10, completion_tokens=5)], wall=1.0)
    assert figures.cached_tokens is None
    assert figures.completion_tokens == 5


def test_without_usage_the_answers_text_is_counted_and_flagged() -> None:
    words = summarize([sample(), sample()], wall=2.0, count=lambda text: len(text.split()))
    assert words.completion_tokens == 6 and not words.usage_reported
    assert words.prompt_tokens is None and words.cached_tokens is None
    chunks = summarize([sample(), sample()], wall=2.0)  # no counter: the content chunks
    assert chunks.completion_tokens == 20


def test_decode_rate_counts_the_tokens_after_the_first_over_the_time_after_it() -> None:
    tokens, rate = decode_rate(sample(ttft=1.0, latency=5.0, completion_tokens=129))
    assert tokens == 129 and rate == pytest.approx(32.0)
    assert decode_rate(Sample(None, 1.0, 0, "", None, "refused")) == (None, None)
    assert decode_rate(sample(ttft=1.0, latency=1.0, completion_tokens=1))[1] is None


# -- the table ---------------------------------------------------------------------------


def test_spread_is_median_min_max_and_skips_missing_rounds() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2 (1–3)"
    assert spread([None, 4.25]) == "4.25"
    assert spread([None, None]) == "n/a"
    assert spread([]) == "n/a"


def test_report_has_a_row_per_server_and_client_count_and_lists_failures() -> None:
    figures = summarize([sample(completion_tokens=64)], wall=4.0)
    runs = [
        Run("pagedrag-int4", 1, 1, 0.1, figures, 128, 20.0),
        Run("pagedrag-int4", 8, 1, 0.2, figures),
        Run("pagedrag-int4", 1, 2, 0.1, figures, 128, 30.0),
        Run("vllm", 1, 1, 0.3, error="vllm exited (1): no CPU backend"),
    ]
    table = report(runs, ["pagedrag-int4", "vllm"], {"llamacpp": "install failed: cmake"})
    rows = table.splitlines()
    same = "16 (16–16) | 0.25 (0.25–0.25) | 0.5 (0.5–0.5) | 0.5 (0.5–0.5) | n/a"
    assert rows[2] == f"| pagedrag-int4 | 1 | {same} | 25 (20–30) |"
    assert rows[3] == "| pagedrag-int4 | 8 | 16 | 0.25 | 0.5 | 0.5 | n/a | – |"
    assert rows[4].startswith("| vllm | 1 | n/a |")
    assert "- vllm x1 round 1: vllm exited (1): no CPU backend" in rows
    assert "- llamacpp: install failed: cmake" in rows
    assert "1-minute load before each run: 0.10, 0.20, 0.10, 0.30" in rows


def test_server_lists_are_checked_and_keep_their_order() -> None:
    parse = names(("pagedrag", "llamacpp", "vllm"))
    assert parse("vllm, pagedrag") == ["vllm", "pagedrag"]
    with pytest.raises(argparse.ArgumentTypeError):
        parse("ollama")
    assert parse_names("llamacpp,vllm") == ["llamacpp", "vllm"]
    with pytest.raises(SystemExit):
        parse_names("tgi")
