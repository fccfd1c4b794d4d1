"""Tokens per second with the model split over tensor-parallel ranks and pipeline stages.

    python -m bench.tensor_parallel [--model NAME] [--splits 1x1,2x1,1x2] [--prompts 8]
                                    [--prompt-tokens 256] [--output-tokens 64] [--rounds 2]

Each split (tensor x pipeline parallel size) starts a fresh engine
(`LLM(tensor_parallel_size=T, pipeline_parallel_size=P)`: gloo on the CPU, NCCL on CUDA),
warms it with one short request, then runs the batch: `--prompts` prompts of
`--prompt-tokens` tokens cut from data/samples at different offsets (prefix caching
off) and `--output-tokens` greedy tokens each (EOS ignored). Reported per size and
round: prefill tokens/s (the prompts, to the last first token) and decode tokens/s
(the rest). On a CPU every rank shares the same cores, so the figure says what the
split costs there; on GPUs each rank has its own.
"""

import argparse
import time
from pathlib import Path

from bench.retrieval_metrics import machine, save_result
from engine import LLM, SamplingParams
from engine.library import DEFAULT_MODEL

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def prompts(llm: LLM, count: int, length: int) -> list[list[int]]:
    """`count` prompts of `length` tokens from data/samples, each starting elsewhere in
    the text (read round and round), so no two share a first token's KV."""
    text = "\n\n".join(path.read_text() for path in sorted(SAMPLES.glob("*.md")))
    tokens = llm.tokenizer(text).input_ids
    stride = max(len(tokens) // count, 1)
    loop = tokens * (-(-(length + count * stride) // len(tokens)) + 1)
    return [loop[i * stride : i * stride + length] for i in range(count)]


def run_batch(llm: LLM, batch: list[list[int]], output_tokens: int) -> dict[str, float]:
    engine = llm.engine
    params = SamplingParams(temperature=0, max_tokens=output_tokens, ignore_eos=True)
    for i, prompt in enumerate(batch):
        engine.add_request(prompt, params, f"bench-{time.monotonic_ns()}-{i}")
    started = time.perf_counter()
    first_tokens = 0
    prefilled_at = started
    while engine.has_unfinished_requests():
        for output in engine.step():
            if len(output.token_ids) == 1:
                first_tokens += 1
                if first_tokens == len(batch):
                    prefilled_at = time.perf_counter()
    ended = time.perf_counter()
    decoded = len(batch) * (output_tokens - 1)
    return {
        "prefill_tok_s": sum(map(len, batch)) / (prefilled_at - started),
        "decode_tok_s": decoded / (ended - prefilled_at),
        "seconds": ended - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--splits", default="1x1,2x1", help="tensor x pipeline parallel sizes, comma-separated"
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--quantization", default=None, help="none, int8, int4 (default: the model's)"
    )
    args = parser.parse_args()
    rows = []
    for split in args.splits.split(","):
        size, stages = (int(value) for value in split.split("x"))
        with LLM(
            args.model,
            tensor_parallel_size=size,
            pipeline_parallel_size=stages,
            quantization=args.quantization,
            kv_cache_memory=1 << 30,
            enable_prefix_caching=False,
        ) as llm:
            batch = prompts(llm, args.prompts, args.prompt_tokens)
            run_batch(llm, [batch[0][:16]], 2)  # warm-up: kernels built, pages touched
            for round_ in range(args.rounds):
                row = {"tensor_parallel_size": size, "pipeline_parallel_size": stages}
                row["round"] = round_
                row |= run_batch(llm, batch, args.output_tokens)
                rows.append(row)
                print(
                    f"TP={size} PP={stages} round {round_}: "
                    f"prefill {row['prefill_tok_s']:.1f} tok/s, "
                    f"decode {row['decode_tok_s']:.2f} tok/s ({row['seconds']:.1f} s)",
                    flush=True,
                )
    info = {
        "model": args.model,
        "quantization": args.quantization,
        "prompts": args.prompts,
        "prompt_tokens": args.prompt_tokens,
        "output_tokens": args.output_tokens,
        "machine": machine(),
    }
    print(save_result("tensor_parallel", {**info, "rows": rows}))


if __name__ == "__main__":
    main()
