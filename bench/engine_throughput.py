"""Engine throughput on a RAG workload: prefix sharing on vs off vs transformers.

    python -m bench.engine_throughput [--rounds 3] [--model NAME] [--hf-batch-sizes 8,16,32,64]

Runs (a) our engine with prefix sharing, (b) without, (c) Hugging Face `generate`
with static batching, interleaved round after round so that a busy machine slows
all three alike; reports the median and the spread (min-max) of every figure and of
the ratios measured side by side within each round.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from bench.hf_baseline import run_hf_static
from bench.kv_accounting import excess_blocks
from bench.run_result import RunResult
from bench.workload import DEFAULT_CORPUS_DIR, SOURCES, Workload, build_workload, load_source
from engine import LLM, SamplingParams
from engine.library import resolve_model

OUTPUT_TOKENS = 64
RESULTS_DIR = Path(__file__).parent / "results"


def run_engine(llm: LLM, workload: Workload, name: str) -> RunResult:
    """Submit every prompt at once and step the engine to the end, timing each request."""
    engine = llm.engine
    engine.block_manager.reset_prefix_cache()
    params = SamplingParams(temperature=0, max_tokens=OUTPUT_TOKENS, ignore_eos=True)
    start = time.perf_counter()
    ids = [engine.add_request(prompt, params) for prompt in workload.prompts]
    first_token: dict[str, float] = {}
    cached: dict[str, int] = {}
    peak = excess = output_tokens = 0
    while engine.has_unfinished_requests():
        for output in engine.step():
            first_token.setdefault(output.request_id, time.perf_counter() - start)
            if output.finished:
                cached[output.request_id] = output.num_cached_tokens
                output_tokens += len(output.token_ids)
        peak = max(peak, engine.block_manager.num_used_blocks)
        excess = max(excess, excess_blocks(engine.block_manager, engine.scheduler.running))
    total = time.perf_counter() - start
    return RunResult(
        name,
        total,
        output_tokens,
        [first_token[i] for i in ids],
        peak,
        sum(cached.values()),
        excess,
    )


def ttft_cold_vs_cached(llm: LLM, prompt: list[int]) -> tuple[float, float]:
    """Time to first token of one prompt on an empty cache, then again with it cached."""
    llm.engine.block_manager.reset_prefix_cache()
    params = SamplingParams(temperature=0, max_tokens=1)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        llm.generate([prompt], params)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def decode_step_vs_floor(llm: LLM, bandwidth: float) -> dict:
    """Single-request decode step time against (weight bytes read per step) / bandwidth."""
    model = llm.engine.runner.model
    # NOTE: the state dict holds the quantized linears' int8/int4 tensors (buffers, not
    # parameters) and not the kernels' repacked copies of them, which are never saved.
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if model.lm_head is not None:  # an untied embedding is gathered by rows, not read whole
        embed = model.model.embed_tokens.weight
        weight_bytes -= embed.numel() * embed.element_size()
    engine = llm.engine
    engine.add_request([1, 2, 3, 4], SamplingParams(temperature=0, max_tokens=66, ignore_eos=True))
    engine.step()  # prefill
    step_times = []
    while engine.has_unfinished_requests():
        start = time.perf_counter()
        engine.step()
        step_times.append(time.perf_counter() - start)
    floor = weight_bytes / bandwidth
    median = statistics.median(step_times)
    return {
        "decode_step_ms": median * 1e3,
        "floor_ms": floor * 1e3,
        "ratio_to_floor": median / floor,
        "weight_gb": weight_bytes / 1e9,
    }


def batched_decode_step(llm: LLM, batch: int = 8, context: int = 1000) -> float:
    """Median step time, in ms, while `batch` sequences of `context` tokens all decode.

    The concurrent-clients case of a RAG server: every step reads the weights once for
    all rows and attends over each sequence's own long prompt. Prompts differ from their
    first token, so no KV is shared.
    """
    engine = llm.engine
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    for index in range(batch):
        engine.add_request([100 + index, *range(200, 200 + context - 1)], params)
    step_times = []
    while engine.has_unfinished_requests():
        running = engine.scheduler.running
        all_decoding = len(running) == batch and all(
            seq.num_tokens - seq.num_computed_tokens <= 1 for seq in running
        )
        start = time.perf_counter()
        engine.step()
        if all_decoding:
            step_times.append(time.perf_counter() - start)
    return statistics.median(step_times) * 1e3


def prefill_ms(llm: LLM, tokens: int = 1000) -> float:
    """Time to first token of one `tokens`-long prompt that shares nothing with the cache:
    a RAG question over passages no earlier question retrieved."""
    llm.engine.block_manager.reset_prefix_cache()
    prompt = [100, *range(300, 300 + tokens - 1)]
    start = time.perf_counter()
    llm.generate([prompt], SamplingParams(temperature=0, max_tokens=1))
    return (time.perf_counter() - start) * 1e3


def memory_bandwidth() -> float:
    """Bytes per second for a large copy (read + write), the best of a few tries."""
    src = torch.empty(256 << 20, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() / best


def machine_report() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": os.getloadavg(),
        "torch": torch.__version__,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="library name or path (default model)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--hf-batch-sizes", default="8,16,32,64", help="tried in round 1; the fastest is kept"
    )
    parser.add_argument("--corpus-dir", type=Path, default=DEFAULT_CORPUS_DIR)
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="passages and questions: SciFact from --corpus-dir when it is there (auto), "
        "else the zaragoza-construction-faq package",
    )
    parser.add_argument("--kv-cache-memory", type=int, default=4 << 30)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = {"machine": machine_report()}
    if os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.2f}: another process is busy")

    model_path = resolve_model(args.model)
    on = LLM(str(model_path), dtype="bfloat16", kv_cache_memory=args.kv_cache_memory)
    off = LLM(
        str(model_path),
        dtype="bfloat16",
        kv_cache_memory=args.kv_cache_memory,
        enable_prefix_caching=False,
    )
    workload = build_workload(on.tokenizer, load_source(args.corpus_dir, args.source))
    report["workload_source"] = workload.source
    prompt_lens = [len(p) for p in workload.prompts]
    print(
        f"workload from {workload.source}: {len(workload.prompts)} prompts, "
        f"{min(prompt_lens)}-{max(prompt_lens)} tokens, shared prefixes "
        f"{workload.shared_prefix_tokens}, {OUTPUT_TOKENS} output tokens each"
    )

    batch_sizes = [int(b) for b in args.hf_batch_sizes.split(",")]
    rounds: list[dict] = []
    for index in range(args.rounds):
        load = os.getloadavg()[0]
        a = run_engine(on, workload, "engine, prefix sharing on")
        b = run_engine(off, workload, "engine, prefix sharing off")
        hf_runs = [run_hf_static(model_path, workload, bs, OUTPUT_TOKENS) for bs in batch_sizes]
        c = max(hf_runs, key=lambda r: r.tokens_per_s)
        batch_sizes = [int(c.name.rsplit("=", 1)[1])]
        cold, cached = ttft_cold_vs_cached(on, workload.prompts[0])
        result = {
            "loadavg": load,
            "a": a.summary(),
            "b": b.summary(),
            "c": c.summary(),
            "c_name": c.name,
            "hf_tried": {r.name: r.tokens_per_s for r in hf_runs},
            "a_over_c": a.tokens_per_s / c.tokens_per_s,
            "a_over_b": a.tokens_per_s / b.tokens_per_s,
            "ttft_cold_s": cold,
            "ttft_cached_s": cached,
            "cold_over_cached": cold / cached,
        }
        rounds.append(result)
        print(
            f"round {index + 1}: a {a.tokens_per_s:.1f} tok/s, b {b.tokens_per_s:.1f}, "
            f"{c.name} {c.tokens_per_s:.1f}; a/c {result['a_over_c']:.2f}, "
            f"a/b {result['a_over_b']:.2f}, cold/cached TTFT {result['cold_over_cached']:.1f}"
        )
        gc.collect()
    report["rounds"] = rounds
    report["decode"] = decode_step_vs_floor(on, memory_bandwidth())
    report["bandwidth_gb_s"] = memory_bandwidth() / 1e9
    _print_table(rounds, report)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"engine_throughput_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nfull results: {out}")


def _print_table(rounds: list[dict], report: dict) -> None:
    print(f"\nworkload: {report['workload_source']}; median (min-max) over {len(rounds)} rounds\n")
    print("| figure | (a) prefix sharing on | (b) prefix sharing off | (c) transformers |")
    print("| --- | --- | --- | --- |")
    for key, label in [
        ("tokens_per_s", "output tokens/s"),
        ("total_s", "total time (s)"),
        ("ttft_mean_s", "TTFT mean (s)"),
        ("ttft_p50_s", "TTFT p50 (s)"),
        ("ttft_p90_s", "TTFT p90 (s)"),
        ("peak_kv_blocks", "peak KV blocks in use"),
        ("cached_prompt_tokens", "prompt tokens served from cache"),
    ]:
        cells = [spread([r[run][key] for r in rounds]) for run in ("a", "b", "c")]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n(c) used {rounds[-1]['c_name']}; tried {rounds[0]['hf_tried']}")
    for key, label in [
        ("a_over_c", "(a)/(c) throughput"),
        ("a_over_b", "(a)/(b) throughput"),
        ("cold_over_cached", "cold/cached TTFT, same prompt"),
    ]:
        print(f"{label}: {spread([r[key] for r in rounds])}")
    print(
        "excess KV blocks (worst sequence over its tokens' need, plus leaks and duplicates), "
        f"(a): "
        f"max {max(r['a']['excess_blocks'] for r in rounds)}"
    )
    d = report["decode"]
    print(
        f"single-request decode step: {d['decode_step_ms']:.1f} ms; floor {d['floor_ms']:.1f} ms "
        f"({d['weight_gb']:.2f} GB of weights at {report['bandwidth_gb_s']:.1f} GB/s); "
        f"{d['ratio_to_floor']:.2f}x the floor"
    )


if __name__ == "__main__":
    main()
