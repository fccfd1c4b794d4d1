"""Where one request's engine step goes: the prefill of a RAG-sized prompt, then decode.

    python -m bench.decode_profile [--model NAME] [--quantization none|int8|int4]
        [--prompt-tokens 945] [--steps 30] [--profile]

Prefills one prompt of `--prompt-tokens` token ids alone, then times `--steps` decode
steps behind it (the median is the figure; a RAG answer decodes behind ~1,000 prompt
tokens, not 4). With `--profile`, ten more steps run under `torch.profiler` and the ops
that took the most time are printed.
"""

import argparse
import time

from engine import LLM, SamplingParams

REQUEST = "profiled"


def main() -> None:
    args = parse_args()
    llm = LLM(args.model, quantization=args.quantization, kv_cache_memory=1 << 30)
    engine = llm.engine
    prompt = list(range(1000, 1000 + args.prompt_tokens))
    params = SamplingParams(temperature=0, max_tokens=args.steps + 20, ignore_eos=True)
    engine.add_request(prompt, params, request_id=REQUEST)
    started = time.perf_counter()
    engine.step()
    prefill_s = time.perf_counter() - started
    print(f"prefill of {args.prompt_tokens} tokens: {prefill_s * 1e3:.0f} ms")
    for _ in range(3):  # warm-up
        engine.step()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - started)
    times.sort()
    print(f"decode step: median {times[len(times) // 2] * 1e3:.1f} ms, min {times[0] * 1e3:.1f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            for _ in range(10):
                engine.step()
        print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    engine.abort_request(REQUEST)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder:0.5b-instruct")
    parser.add_argument("--quantization", choices=["none", "int8", "int4"], default="none")
    parser.add_argument("--prompt-tokens", type=int, default=945)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    main()
