"""bench/passage_reuse.py's report: agreement with the exact answers and the summary."""

import pytest

from bench.passage_reuse import agreement, summarise


def test_agreement_counts_identical_answers_and_the_equal_prefix() -> None:
    exact = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 9]]
    reused = [[1, 2, 3, 4], [5, 6, 0, 8], [0, 9]]
    result = agreement(reused, exact)
    assert result["identical_share"] == pytest.approx(1 / 3)
    assert result["mean_equal_prefix"] == pytest.approx((1 + 0.5 + 0) / 3)


def run(mode: str, ttft: float, tok_s: float) -> dict:
    return {
        "mode": mode,
        "computed_share": 0.5,
        "ttft_p50_s": ttft,
        "ttft_p90_s": 2 * ttft,
        "output_tok_s": tok_s,
        "agreement": {"identical_share": 1.0, "mean_equal_prefix": 1.0},
    }


def test_the_summary_compares_the_first_passage_mode_with_prefix_caching() -> None:
    modes = ["prefix", "passage k=16", "passage k=0"]
    runs = [
        run("prefix", 40.0, 1.0),
        run("passage k=16", 16.0, 4.0),
        run("passage k=0", 10.0, 5.0),
        run("prefix", 44.0, 1.2),
        run("passage k=16", 12.0, 4.4),
        run("passage k=0", 11.0, 5.0),
    ]
    summary = summarise(runs, modes)
    assert summary["ttft_p50_ratio"] == {"mode": "passage k=16", "prefix_over_passage": 3.0}
    assert summary["ttft_p50_s"]["prefix"] == {"median": 42.0, "min": 40.0, "max": 44.0}
    assert set(summary["agreement"]) == {"passage k=16", "passage k=0"}
    assert "ttft_p50_ratio" not in summarise(runs[1:2], ["passage k=16"])
