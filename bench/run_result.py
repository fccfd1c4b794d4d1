"""One benchmark run's figures, the same for our engine and the transformers baseline."""

import statistics
from dataclasses import dataclass, field


@dataclass
class RunResult:
    name: str
    total_s: float
    output_tokens: int
    ttft_s: list[float] = field(repr=False)
    peak_kv_blocks: int = 0
    cached_prompt_tokens: int = 0
    excess_blocks: int = 0  # peak of `kv_accounting.excess_blocks`: 0 means KV is as tight as asked

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.total_s

    def summary(self) -> dict:
        ttft = sorted(self.ttft_s)
        return {
            "tokens_per_s": self.tokens_per_s,
            "total_s": self.total_s,
            "ttft_mean_s": statistics.fmean(ttft),
            "ttft_p50_s": _percentile(ttft, 50),
            "ttft_p90_s": _percentile(ttft, 90),
            "peak_kv_blocks": self.peak_kv_blocks,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "excess_blocks": self.excess_blocks,
        }


def _percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]
