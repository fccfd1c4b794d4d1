"""KV memory of `n` samples of one RAG-sized prompt: shared prompt blocks vs n copies.

    python -m bench.parallel_sampling [--model NAME] [--prompt-tokens 1000] [--n 1,4,8]

Each run generates 32 tokens per sample (ignoring EOS) from the same prompt, cut from
the Markdown files of data/samples, and records the most KV blocks in use at once. Without
sharing, n samples would hold n copies of the prompt's blocks. Block counts depend on
the tokenizer only, not on the machine or its load.
"""

import argparse
from pathlib import Path

from bench.retrieval_metrics import machine, save_result
from engine import LLM, SamplingParams
from engine.library import DEFAULT_MODEL

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def peak_blocks(llm: LLM, prompt: list[int], n: int) -> int:
    engine = llm.engine
    params = SamplingParams(n=n, temperature=1.0, seed=0, max_tokens=32, ignore_eos=True)
    engine.add_request(prompt, params)
    peak = 0
    while engine.has_unfinished_requests():
        engine.step()
        peak = max(peak, engine.block_manager.num_used_blocks)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--n", default="1,4,8", help="sample counts, comma-separated")
    args = parser.parse_args()
    llm = LLM(args.model, kv_cache_memory=512 << 20, max_model_len=args.prompt_tokens + 64)
    text = "\n\n".join(path.read_text() for path in sorted(SAMPLES.glob("*.md")))
    prompt = llm.encode_chat([{"role": "user", "content": text}])
    prompt = prompt[: args.prompt_tokens]
    rows = []
    for n in (int(value) for value in args.n.split(",")):
        single = peak_blocks(llm, prompt, 1)
        shared = peak_blocks(llm, prompt, n)
        rows.append({"n": n, "blocks": shared, "unshared": n * single})
        print(
            f"n={n}: {shared} KV blocks at peak; {n} separate requests: {n * single} "
            f"({n * single / shared:.1f}x more)"
        )
    print(f"{args.model}, a {len(prompt)}-token prompt, 32 tokens per sample")
    info = {"model": args.model, "prompt_tokens": len(prompt), "machine": machine()}
    print(save_result("parallel_sampling", {**info, "rows": rows}))


if __name__ == "__main__":
    main()
