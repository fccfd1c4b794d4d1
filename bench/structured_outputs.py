"""What structured outputs cost per token: the same greedy generation free and as JSON.

    python -m bench.structured_outputs [--model NAME] [--tokens 64] [--rounds 3]

One request at a time, up to --tokens each; the time after the first token divided by
the tokens after it. Reports the decode time per token with and without the grammar, and
the difference: xgrammar's bitmask fill and apply, per constrained row and step.
"""

import argparse
import statistics
import time

from bench.retrieval_metrics import machine, save_result
from engine import LLM, SamplingParams
from engine.library import DEFAULT_MODEL
from engine.structured_outputs import StructuredOutputs

QUESTION = "List three facts about paged attention as JSON."


def per_token_ms(llm: LLM, prompt: list[int], tokens: int, json: bool) -> float:
    spec = StructuredOutputs(json_object=True) if json else None
    params = SamplingParams(temperature=0, max_tokens=1, structured_outputs=spec)
    started = time.perf_counter()
    llm.generate([prompt], params)  # the prefill (cached after the first round) and one token
    first = time.perf_counter() - started
    params = SamplingParams(temperature=0, max_tokens=tokens, structured_outputs=spec)
    started = time.perf_counter()
    (output,) = llm.generate([prompt], params)
    if output.error is not None or len(output.token_ids) < 2:
        raise RuntimeError(f"the run failed: {output.error or 'one token'}")
    return (time.perf_counter() - started - first) / (len(output.token_ids) - 1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = machine()
    llm = LLM(args.model, kv_cache_memory=256 << 20, max_model_len=1024)
    prompt = llm.encode_chat([{"role": "user", "content": QUESTION}])
    per_token_ms(llm, prompt, 8, json=True)  # compiles the JSON grammar once
    free, constrained = [], []
    for _ in range(args.rounds):
        free.append(per_token_ms(llm, prompt, args.tokens, json=False))
        constrained.append(per_token_ms(llm, prompt, args.tokens, json=True))
    for name, values in (("free", free), ("json", constrained)):
        print(
            f"{name:>5}: {statistics.median(values):6.2f} ms/token "
            f"({min(values):.2f}-{max(values):.2f}, {args.rounds} rounds)"
        )
    extra = statistics.median(constrained) - statistics.median(free)
    print(f"the grammar: {extra:+.2f} ms/token ({extra / statistics.median(free):+.1%})")
    result = {"model": args.model, "free_ms": free, "json_ms": constrained, "machine": started}
    print(save_result("structured_outputs", result))


if __name__ == "__main__":
    main()
