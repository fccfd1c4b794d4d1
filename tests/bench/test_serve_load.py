"""The serving benchmark's bookkeeping: work list, request kinds, figures and ratios."""

from collections import Counter

import pytest

from bench.pdf_corpus import REWORDED
from bench.serve_load import Sample, by_passage_set_use, paired, report, summarize, workload
from bench.server_process import parse_metrics

QUESTIONS = sum(len(questions) for questions in REWORDED.values())


def answered(index: int, chunks: list[int], ttft: float, cached: int = 0) -> Sample:
    done = {
        "found": True,
        "answer": f"answer {index}",
        "citations": [{"chunk_id": chunk} for chunk in chunks],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": cached},
        "timings": {"retrieve_ms": 10.0, "ttft_ms": ttft * 1000, "total_ms": ttft * 1000 + 500},
    }
    return Sample(index, f"group {chunks[0]}", ttft, ttft + 0.5, done, None)


def test_the_default_work_list_asks_every_question_twice_in_one_order() -> None:
    work = workload(2 * QUESTIONS, seed=0)
    assert Counter(work) == Counter({pair: 2 for pair in work})
    assert len(set(work)) == QUESTIONS
    assert work[:QUESTIONS] == work[QUESTIONS:]
    assert workload(QUESTIONS, seed=0) == work[:QUESTIONS]
    assert workload(QUESTIONS, seed=1) != work[:QUESTIONS]


def test_requests_split_by_first_use_of_their_passage_set_in_send_order() -> None:
    samples = [answered(2, [1, 2], 1.0), answered(0, [1, 2], 5.0), answered(1, [3], 4.0)]
    kinds = by_passage_set_use(samples)
    assert [s.index for s in kinds["first_set"]] == [0, 1]
    assert [s.index for s in kinds["seen_set"]] == [2]


def test_summary_counts_failures_and_takes_the_hit_rate_from_metrics() -> None:
    samples = [
        answered(0, [1, 2], 6.0),
        answered(1, [1, 2], 1.0, cached=80),
        answered(2, [7], 4.0),
        Sample(3, "g", None, 0.1, None, "HTTP 503: overloaded"),
    ]
    before = {"pagedrag_prefix_cache_queries_tokens": 50.0, "pagedrag_prefix_cache_hits_tokens": 5}
    after = {"pagedrag_prefix_cache_queries_tokens": 350.0, "pagedrag_prefix_cache_hits_tokens": 65}
    figures = summarize(samples, 10.0, before, after)
    assert figures["requests_ok"] == 3 and figures["requests_failed"] == 1
    assert figures["hit_rate_metrics"] == pytest.approx(60 / 300)
    assert figures["cached_share_usage"] == pytest.approx(80 / 300)
    assert figures["first_set_requests"] == 2 and figures["seen_set_requests"] == 1
    assert figures["seen_set_ttft_p50_s"] == pytest.approx(1.0)
    assert figures["requests_per_s"] == pytest.approx(0.3)


def test_a_run_where_nothing_was_answered_stops_with_the_errors() -> None:
    failed = [Sample(0, "g", None, 0.1, None, "ConnectionRefusedError: refused")]
    with pytest.raises(SystemExit, match="ConnectionRefusedError"):
        summarize(failed, 1.0, {}, {})


def test_pairing_compares_only_requests_both_runs_answered() -> None:
    on = summarize([answered(0, [1], 1.0), answered(1, [1], 1.0)], 1.0, {}, {})
    off = summarize([answered(0, [1], 4.0)], 1.0, {}, {})
    assert paired(on, off) == {"requests": 1, "ttft_p50_ratio": 4.0, "same_answer_share": 1.0}


def test_the_report_marks_a_kind_no_round_had() -> None:
    on = summarize([answered(0, [1], 1.0)], 1.0, {}, {})  # no request reused a set
    off = summarize([answered(0, [1], 3.0)], 1.0, {}, {})
    table = report([{"on": on, "off": off, "paired": paired(on, off), "load_average_1m": 0.5}])
    assert "| client TTFT p50, off / on | 3 (3–3) |" in table
    assert "| client TTFT p50 on a set used before, off / on | – |" in table


def test_metrics_text_sums_each_name_over_its_labels_without_the_total_suffix() -> None:
    text = (
        "# HELP pagedrag_prefix_cache_hits_tokens_total hits\n"
        'pagedrag_prefix_cache_hits_tokens_total{model="smollm2:135m-instruct"} 42.0\n'
        'pagedrag_prefix_cache_hits_tokens_total{model="qwen2.5-coder:0.5b-instruct"} 8.0\n'
        'pagedrag_requests_total{route="/ask",status="200"} 3.0\n'
        "pagedrag_kv_blocks_used 7.0\n"
    )
    assert parse_metrics(text) == {
        "pagedrag_prefix_cache_hits_tokens": 50.0,
        "pagedrag_requests": 3.0,
        "pagedrag_kv_blocks_used": 7.0,
    }
