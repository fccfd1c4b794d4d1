"""What weight-only quantization costs in accuracy and buys in decode speed.

    python -m bench.quantization [--model NAME] [--tokens 20480] [--rounds 2]
        [--dtype float32|bfloat16] [--decode-only] [--methods none,int8,int4]

For full-precision weights (the engine's dtype for this CPU, or --dtype), int8 and
int4: perplexity on SciFact abstracts (real scientific text, at least 20,000 scored
tokens), the share of positions whose top next-token choice equals full precision's,
greedy generations' agreement with it, the single-request decode step against the
weight-bandwidth floor measured in the same run, and the step of 8 sequences decoding
together behind 1,000-token prompts (a RAG server's concurrent clients), and the prefill of a
1,000-token prompt the cache does not hold (a RAG question's time to first token). The decode
timings alternate the methods round after round so that a busy machine slows all alike.
"""

import argparse
import gc
import json
import os
import time
from pathlib import Path

from bench.beir import load_beir
from bench.engine_throughput import (
    RESULTS_DIR,
    batched_decode_step,
    decode_step_vs_floor,
    machine_report,
    memory_bandwidth,
    prefill_ms,
    spread,
)
from bench.perplexity import WindowScores, score_windows, windows
from engine import LLM, SamplingParams
from engine.library import resolve_model

SCIFACT_DIR = Path("/work/shared/data/beir-scifact")
METHODS = ("none", "int8", "int4")
WINDOW = 1024
ACCURACY_COLUMNS = ("perplexity", "perplexity_vs_full", "top1_agreement", "greedy_prefix_share")
GREEDY_TOKENS = 48
GREEDY_PROMPTS = (
    "Explain in two sentences what a hash table is.",
    "What causes the seasons on Earth?",
    "Write a Python function that reverses a string.",
    "Summarise the plot of Romeo and Juliet in one paragraph.",
    "List three differences between TCP and UDP.",
    "用一句话解释什么是光合作用。",
    "How does a vaccine train the immune system?",
    "What is the difference between a list and a tuple in Python?",
)


def scifact_text(corpus_dir: Path) -> str:
    corpus = load_beir(corpus_dir).corpus
    return "\n\n".join(f"{doc.title}\n{doc.text}" for doc in corpus)


def greedy_outputs(llm: LLM) -> list[list[int]]:
    params = SamplingParams(temperature=0, max_tokens=GREEDY_TOKENS, ignore_eos=True)
    conversations = [[{"role": "user", "content": prompt}] for prompt in GREEDY_PROMPTS]
    return [out.token_ids for out in llm.chat(conversations, params, use_tqdm=False)]


def common_prefix_share(a: list[list[int]], b: list[list[int]]) -> float:
    """Mean share of each generation that matches the other's before they first differ."""
    shares = []
    for x, y in zip(a, b, strict=True):
        same = next((i for i, (s, t) in enumerate(zip(x, y, strict=False)) if s != t), len(x))
        shares.append(same / len(x))
    return sum(shares) / len(shares)


def load(model: str, method: str, dtype: str | None) -> LLM:
    return LLM(model, dtype=dtype, quantization=method, kv_cache_memory=1 << 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="library name or path (default model)")
    parser.add_argument("--tokens", type=int, default=20 * WINDOW, help="tokens to score")
    parser.add_argument("--rounds", type=int, default=2, help="of decode timings")
    parser.add_argument("--corpus-dir", type=Path, default=SCIFACT_DIR)
    # NOTE: the engine's own default: bf16 only on CPUs with native bf16 (AVX-512 BF16,
    # AMX); elsewhere bf16 matmuls are several times slower than fp32.
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    parser.add_argument("--decode-only", action="store_true", help="skip the accuracy part")
    parser.add_argument(
        "--methods",
        type=lambda text: tuple(text.split(",")),
        default=METHODS,
        help="comma-separated, of none,int8,int4 (accuracy needs none, its reference)",
    )
    args = parser.parse_args()
    methods = args.methods
    if not set(methods) <= set(METHODS) or (not args.decode_only and "none" not in methods):
        parser.error(f"--methods takes {','.join(METHODS)}; the accuracy part needs none")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report: dict = {"machine": machine_report(), "window": WINDOW, "dtype": args.dtype}
    model = str(resolve_model(args.model))
    text = scifact_text(args.corpus_dir)

    scores: dict[str, WindowScores] = {}
    greedy: dict[str, list[list[int]]] = {}
    for method in () if args.decode_only else methods:
        llm = load(model, method, args.dtype)
        token_ids = llm.tokenizer(text).input_ids[: args.tokens + args.tokens // WINDOW]
        started = time.perf_counter()
        scores[method] = score_windows(llm, windows(token_ids, WINDOW))
        greedy[method] = greedy_outputs(llm)
        print(
            f"{method}: perplexity {scores[method].perplexity:.4f} over "
            f"{len(scores[method].nll)} tokens ({time.perf_counter() - started:.0f} s)"
        )
        del llm
        gc.collect()

    decode: dict[str, list[dict]] = {method: [] for method in methods}
    for index in range(args.rounds):
        load_avg = os.getloadavg()[0]
        for method in methods:
            llm = load(model, method, args.dtype)
            result = decode_step_vs_floor(llm, memory_bandwidth())
            result["batch8_step_ms"] = batched_decode_step(llm, batch=8, context=1000)
            result["prefill_1000_ms"] = prefill_ms(llm, tokens=1000)
            decode[method].append({**result, "loadavg": load_avg})
            del llm
            gc.collect()
        print(
            f"round {index + 1} (load {load_avg:.2f}): "
            + ", ".join(f"{m} {decode[m][-1]['decode_step_ms']:.1f} ms" for m in methods)
        )

    rows = [{"method": method, "decode": decode[method]} for method in methods]
    if scores:
        for row in rows:
            row.update(_accuracy(scores, greedy, row["method"]))
    report["methods"] = rows
    _print_table(rows, args.rounds)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"quantization_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nfull results: {out}")


def _accuracy(
    scores: dict[str, WindowScores], greedy: dict[str, list[list[int]]], method: str
) -> dict:
    base = scores["none"]
    return {
        "perplexity": f"{scores[method].perplexity:.3f}",
        "perplexity_vs_full": f"{scores[method].perplexity / base.perplexity - 1:+.2%}",
        "top1_agreement": f"{scores[method].agreement(base):.1%}",
        "greedy_prefix_share": f"{common_prefix_share(greedy[method], greedy['none']):.1%}",
        "scored_tokens": len(scores[method].nll),
    }


def _print_table(rows: list[dict], rounds: int) -> None:
    print(f"\nmedian (min-max) over {rounds} rounds of decode timings\n")
    print(
        "| weights | perplexity | vs full precision | top-1 agreement | greedy agreement "
        "| decode step (ms) | floor (ms) | step / floor | 8 x 1,000-token decode step (ms) "
        "| 1,000-token prefill (ms) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        d = row["decode"]
        accuracy = [row.get(key, "–") for key in ACCURACY_COLUMNS]
        print(
            f"| {row['method']} | {' | '.join(accuracy)} "
            f"| {spread([r['decode_step_ms'] for r in d])} "
            f"| {spread([r['floor_ms'] for r in d])} "
            f"| {spread([r['ratio_to_floor'] for r in d])} "
            f"| {spread([r['batch8_step_ms'] for r in d])} "
            f"| {spread([r['prefill_1000_ms'] for r in d])} |"
        )


if __name__ == "__main__":
    main()
