"""Passage KV reuse against prefix caching alone, on overlapping passage sets.

    python -m bench.passage_reuse [--model NAME] [--requests 32] [--clients 8]
        [--pool 8] [--per-prompt 5] [--recompute 16[,0,32]] [--rounds 2] [--max-tokens 32]

The workload is what RAG over one library looks like: every request carries 5 passages
drawn from a pool of 8 real passages (BEIR SciFact abstracts when the shared data folder
has them, else the FAQ package's answers), in a random order, so any two sets share
about 3 passages but rarely the same ones in the same order, and a question of its own.
Prompts are built by the pipeline's own `PromptBuilder`, which marks each passage body.
8 clients send the requests (4 each, one after the other) to one in-process
`AsyncLLMEngine`, greedy, `max_tokens` fixed so every mode generates the same count.

Modes, each on a fresh engine (cold caches) and alternated over the rounds:
- `prefix`: prefix caching only (the engine's default);
- `passage k=K`: the passage cache on, the first K tokens of each reused passage
  computed again, for each K of `--recompute` (the first is the one the TTFT ratio is
  reported for).
Reported per mode: prompt tokens computed against the full recompute (every prompt
token), TTFT p50 / p90, output tokens per second over the run, and for `passage` the
share of requests whose greedy tokens equal prefix caching's (prefix caching is exact:
it equals a full recompute) and the mean share of tokens equal before the first
difference.
"""

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import dataclass

from bench.engine_throughput import machine_report
from bench.retrieval_metrics import save_result
from bench.workload import DEFAULT_CORPUS_DIR, SOURCES, load_source
from engine import AsyncLLMEngine, EngineConfig, SamplingParams
from engine.library import resolve_model
from engine.tokenizer import load_tokenizer
from indexer.records import SearchHit
from rag.language import Language
from rag.prompt import BuiltPrompt, PromptBuilder

PREFIX = "prefix"


@dataclass(frozen=True)
class Request:
    prompt: BuiltPrompt
    passage_ids: tuple[int, ...]  # which pool passages, in prompt order


@dataclass(frozen=True)
class Sample:
    ttft_s: float
    prompt_tokens: int
    cached_tokens: int
    token_ids: list[int]


def build_requests(tokenizer, args: argparse.Namespace) -> list[Request]:
    source = load_source(args.corpus_dir, args.source)
    rng = random.Random(args.seed)
    texts = [t for t in source.passages if 600 <= len(t) <= 1600]  # ~150-350 tokens
    pool = [
        SearchHit(
            chunk_id=n,
            document_id=n,
            title=text.split(". ")[0][:80],
            page=None,
            text=text,
            score=1.0,
            metadata={},
            collection="bench",
            char_start=0,
            char_end=len(text),
            dense_score=None,
            bm25_score=None,
            relevant=True,
        )
        for n, text in enumerate(rng.sample(texts, args.pool))
    ]
    questions = rng.sample(source.questions, args.requests)
    builder = PromptBuilder(tokenizer)
    requests = []
    for question in questions:
        chosen = rng.sample(range(args.pool), args.per_prompt)  # a random order too
        hits = [pool[n] for n in chosen]
        prompt = builder.build(hits, source.question_prefix + question, Language.ENGLISH)
        requests.append(Request(prompt, tuple(chosen)))
    return requests


async def drive(engine: AsyncLLMEngine, requests: list[Request], args) -> tuple[list, float]:
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens, ignore_eos=True)
    samples: list[Sample | None] = [None] * len(requests)

    async def client(indices: list[int]) -> None:
        for index in indices:
            prompt = requests[index].prompt
            started = time.perf_counter()
            ttft, last = None, None
            async for output in engine.generate(
                prompt.token_ids, params, passages=prompt.passage_spans
            ):
                if ttft is None:
                    ttft = time.perf_counter() - started
                last = output
            assert last is not None and ttft is not None
            samples[index] = Sample(
                ttft, len(prompt.token_ids), last.num_cached_tokens, list(last.token_ids)
            )

    started = time.perf_counter()
    shares = [list(range(c, len(requests), args.clients)) for c in range(args.clients)]
    await asyncio.gather(*(client(indices) for indices in shares))
    return samples, time.perf_counter() - started


def run_mode(mode: str, requests: list[Request], args: argparse.Namespace) -> dict:
    config = EngineConfig(
        model=args.model,
        enable_passage_cache=mode != PREFIX,
        passage_recompute_tokens=int(mode.split("=")[-1]) if mode != PREFIX else 0,
        passage_max_wait_steps=args.max_wait_steps,
        kv_cache_memory=args.kv_cache_memory,
    )
    with AsyncLLMEngine.from_config(config) as engine:
        warm = engine.complete([[1, 2, 3, 4] * 8], SamplingParams(max_tokens=2))  # kernels
        assert warm
        samples, wall = asyncio.run(drive(engine, requests, args))
        stats = engine.stats()
    prompt = sum(s.prompt_tokens for s in samples)
    computed = sum(s.prompt_tokens - s.cached_tokens for s in samples)
    ttfts = sorted(s.ttft_s for s in samples)
    output = sum(len(s.token_ids) for s in samples)
    return {
        "mode": mode,
        "prompt_tokens": prompt,
        "computed_prompt_tokens": computed,
        "computed_share": computed / prompt,
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_p90_s": ttfts[int(0.9 * (len(ttfts) - 1))],
        "output_tok_s": output / wall,
        "wall_s": wall,
        "preemptions": stats.num_preemptions,
        "passage_cache": {
            "queries": stats.passage_cache_queries,
            "hits": stats.passage_cache_hits,
            "reused_tokens": stats.passage_cache_reused_tokens,
            "recomputed_tokens": stats.passage_cache_recomputed_tokens,
        },
        "outputs": [s.token_ids for s in samples],
    }


def agreement(reused: list[list[int]], exact: list[list[int]]) -> dict:
    same = [a == b for a, b in zip(reused, exact, strict=True)]
    prefixes = []
    for a, b in zip(reused, exact, strict=True):
        equal = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(b))
        prefixes.append(equal / len(b))
    return {
        "identical_share": sum(same) / len(same),
        "mean_equal_prefix": statistics.mean(prefixes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="library name or path (default model)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pool", type=int, default=8, help="passages the sets are drawn from")
    parser.add_argument("--per-prompt", type=int, default=5)
    parser.add_argument(
        "--recompute", default="16", help="passage head tokens recomputed; several: 16,0,32"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--max-wait-steps",
        type=int,
        default=EngineConfig.passage_max_wait_steps,
        help="cache-aware admission's bound; 0: first come, first served",
    )
    parser.add_argument(
        "--modes",
        default="prefix,passage",
        help="prefix, passage or both (prefix is the reference)",
    )
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--kv-cache-memory", type=int, default=None, metavar="BYTES")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus-dir", default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--source", choices=SOURCES, default="auto")
    args = parser.parse_args()

    report: dict[str, object] = {
        "machine": machine_report(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    requests = build_requests(load_tokenizer(resolve_model(args.model)), args)
    report["workload"] = workload_report(requests)
    print(report["workload"], flush=True)
    wanted = args.modes.split(",")
    if not wanted or set(wanted) - {PREFIX, "passage"}:
        parser.error("--modes takes prefix, passage or prefix,passage")
    modes = [PREFIX] if PREFIX in wanted else []
    if "passage" in wanted:
        modes += [f"passage k={int(k)}" for k in args.recompute.split(",")]
    runs: list[dict] = []
    for round_number in range(args.rounds):
        for mode in modes if round_number % 2 == 0 else modes[::-1]:
            result = run_mode(mode, requests, args)
            result["round"] = round_number
            runs.append(result)
            print(summary_line(result), flush=True)
    exact = next((r["outputs"] for r in runs if r["mode"] == PREFIX), None)
    for run in runs:
        if run["mode"] != PREFIX and exact is not None:
            run["agreement"] = agreement(run["outputs"], exact)
    report["runs"] = runs
    summary = summarise(runs, modes)
    report["summary"] = summary
    print_summary(summary)
    print(f"saved {save_result('passage_reuse', report)}")


def workload_report(requests: list[Request]) -> dict:
    shared = [
        len(set(a.passage_ids) & set(b.passage_ids))
        for i, a in enumerate(requests)
        for b in requests[i + 1 :]
    ]
    return {
        "requests": len(requests),
        "mean_prompt_tokens": statistics.mean(len(r.prompt.token_ids) for r in requests),
        "mean_passages_shared_by_two_sets": statistics.mean(shared),
        "identical_sets_in_identical_order": sum(
            a.passage_ids == b.passage_ids
            for i, a in enumerate(requests)
            for b in requests[i + 1 :]
        ),
    }


def summarise(runs: list[dict], modes: list[str]) -> dict:
    def of(mode: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["mode"] == mode]

    summary: dict[str, object] = {}
    for key in ("computed_share", "ttft_p50_s", "ttft_p90_s", "output_tok_s"):
        summary[key] = {mode: spread(of(mode, key)) for mode in modes}
    if modes[0] != PREFIX or len(modes) < 2:
        return summary  # nothing to compare with
    prefix_ttft = statistics.median(of(PREFIX, "ttft_p50_s"))
    passage_ttft = statistics.median(of(modes[1], "ttft_p50_s"))
    summary["ttft_p50_ratio"] = {
        "mode": modes[1],
        "prefix_over_passage": prefix_ttft / passage_ttft,
    }
    summary["agreement"] = {
        mode: [r["agreement"] for r in runs if r["mode"] == mode] for mode in modes[1:]
    }
    return summary


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary_line(result: dict) -> str:
    return (
        f"round {result['round']} {result['mode']:>12}: computed "
        f"{result['computed_share']:.1%} of {result['prompt_tokens']} prompt tokens, "
        f"TTFT p50 {result['ttft_p50_s']:.2f} s p90 {result['ttft_p90_s']:.2f} s, "
        f"{result['output_tok_s']:.2f} output tok/s, wall {result['wall_s']:.0f} s, "
        f"preemptions {result['preemptions']}, passages {passage_line(result)}"
    )


def passage_line(result: dict) -> str:
    cache = result["passage_cache"]
    return f"{cache['hits']}/{cache['queries']} hits, {cache['recomputed_tokens']} recomputed"


def print_summary(summary: dict) -> None:
    for key in ("computed_share", "ttft_p50_s", "ttft_p90_s", "output_tok_s"):
        cells = "  ".join(
            f"{mode} {v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f})"
            for mode, v in summary[key].items()
        )
        print(f"{key:>16}: {cells}")
    if "ttft_p50_ratio" in summary:
        ratio = summary["ttft_p50_ratio"]
        print(f"TTFT p50 prefix / {ratio['mode']}: {ratio['prefix_over_passage']:.2f}x")
        print(f"agreement with prefix caching (exact): {summary['agreement']}")


if __name__ == "__main__":
    main()
