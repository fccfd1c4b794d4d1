"""Baseline (c): Hugging Face `generate` with static batching, as most local stacks run it."""

import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from bench.run_result import RunResult
from bench.workload import Workload


class _FirstTokenClock(LogitsProcessor):
    """Notes when a batch's prefill is over: the first call comes right after it."""

    def __init__(self) -> None:
        self.first_call: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        return scores


def run_hf_static(
    model_path: Path, workload: Workload, batch_size: int, output_tokens: int
) -> RunResult:
    """All prompts arrive at t=0; batches run one after another, left-padded."""
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16).eval()
    pad_id = model.generation_config.pad_token_id or 0
    ttft: list[float] = []
    start = time.perf_counter()
    for first in range(0, len(workload.prompts), batch_size):
        batch = workload.prompts[first : first + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        clock = _FirstTokenClock()
        with torch.no_grad():
            model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=output_tokens,
                min_new_tokens=output_tokens,  # fixed output length, like ignore_eos
                do_sample=False,
                pad_token_id=pad_id,
                logits_processor=LogitsProcessorList([clock]),
            )
        ttft.extend([(clock.first_call or time.perf_counter()) - start] * len(batch))
    total = time.perf_counter() - start
    del model
    return RunResult(
        f"transformers static batch={batch_size}",
        total,
        output_tokens * len(workload.prompts),
        ttft,
    )
