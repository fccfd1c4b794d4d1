"""Where to turn a reused passage's keys: once, on a copy, or on every read in attention.

    python -m bench.passage_rotation [--model NAME] [--passage-tokens 1000] [--repeats 5]

A passage cached at one position and reused at another needs its keys turned by the
difference (RoPE is a rotation). Two ways:

- copy and rotate: when the passage is placed, its K rows are read, turned and written
  into the sequence's own blocks (V copied as is): one pass over the passage per
  request, after which attention reads plain keys;
- rotate on read: the blocks are shared as they are and attention turns every cached
  key of the passage each time it reads it, that is every decode step of every layer.

Measured on this CPU with the engine's own torch ops at the model's shapes (every layer,
the passage's tokens), and in Triton (the interpreter on a machine without a GPU, or
compiled on CUDA) with a decode-attention tile loop with and without the turn fused into
its key loads, beside a copy-and-rotate kernel. Reported: the one-time cost of copy and
rotate, the extra cost per decode step of rotating on read, and the decode steps after
which copying is cheaper.
"""

import argparse
import os
import statistics
import time

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import triton
import triton.language as tl

from bench.engine_throughput import machine_report
from bench.retrieval_metrics import save_result
from engine.library import resolve_model
from engine.models.loader import read_decoder_config
from engine.models.rope import RotaryEmbedding


def best_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def torch_costs(model: str | None, tokens: int, repeats: int) -> dict:
    """Copy-and-rotate once against rotate-on-read per decode step, every layer."""
    config = read_decoder_config(resolve_model(model))
    layers, heads, dim = config.num_layers, config.num_kv_heads, config.head_dim
    rope = RotaryEmbedding(
        dim, config.max_position_embeddings, config.rope_theta, config.rope_scaling
    )
    slots = 4 * tokens
    caches = [
        (torch.randn(slots, heads, dim), torch.randn(slots, heads, dim)) for _ in range(layers)
    ]
    src = torch.arange(tokens)
    dst = torch.arange(tokens, 2 * tokens)
    old = torch.arange(100, 100 + tokens)
    new = old + 337

    def copy_and_rotate() -> None:
        rotation = rope.shift(old, new, torch.float32)
        for keys, values in caches:
            keys[dst] = rotation.rotate_keys(keys[src])
            values[dst] = values[src]

    rotation = rope.shift(old, new, torch.float32)

    def rotate_on_read() -> None:  # what one decode step adds: every layer's passage keys
        for keys, _ in caches:
            rotation.rotate_keys(keys[src])

    once = best_ms(copy_and_rotate, repeats)
    per_step = best_ms(rotate_on_read, repeats)
    return {
        "shape": {"layers": layers, "kv_heads": heads, "head_dim": dim, "tokens": tokens},
        "copy_and_rotate_ms": once,
        "rotate_on_read_ms_per_decode_step": per_step,
        "break_even_decode_steps": once / per_step,
    }


@triton.jit
def _rotate_copy_kernel(
    src_ptr, dst_ptr, cos_ptr, sin_ptr, tokens, HALF: tl.constexpr, BLOCK_N: tl.constexpr
):
    """BLOCK_N key rows turned by their angles: dst = src * cos + rotate_half(src) * sin."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < tokens)[:, None]
    offsets = rows[:, None] * 2 * HALF + tl.arange(0, HALF)[None, :]
    first = tl.load(src_ptr + offsets, mask=mask, other=0.0)
    second = tl.load(src_ptr + offsets + HALF, mask=mask, other=0.0)
    cos = tl.load(cos_ptr + offsets, mask=mask, other=1.0)
    sin = tl.load(sin_ptr + offsets, mask=mask, other=0.0)
    tl.store(dst_ptr + offsets, first * cos - second * sin, mask=mask)
    tl.store(dst_ptr + offsets + HALF, second * cos + first * sin, mask=mask)


@triton.jit
def _decode_kernel(
    query_ptr,  # [HALF * 2]
    key_ptr,  # [tokens, HALF * 2]
    value_ptr,
    cos_ptr,  # [tokens, HALF * 2]: each key's turn (read only when ROTATE)
    sin_ptr,
    out_ptr,
    tokens,
    scale,
    HALF: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROTATE: tl.constexpr,
):
    """One query attending to `tokens` keys, BLOCK_N at a time; ROTATE turns each key
    tile as it is loaded, as a kernel reading shared unturned blocks would."""
    lo = tl.arange(0, HALF)
    q_first = tl.load(query_ptr + lo)
    q_second = tl.load(query_ptr + HALF + lo)
    acc_first = tl.zeros([HALF], dtype=tl.float32)
    acc_second = tl.zeros([HALF], dtype=tl.float32)
    row_max = float("-inf")
    row_sum = 0.0
    for start in range(0, tokens, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        mask = rows < tokens
        offsets = rows[:, None] * 2 * HALF + lo[None, :]
        k_first = tl.load(key_ptr + offsets, mask=mask[:, None], other=0.0)
        k_second = tl.load(key_ptr + offsets + HALF, mask=mask[:, None], other=0.0)
        if ROTATE:
            cos = tl.load(cos_ptr + offsets, mask=mask[:, None], other=1.0)
            sin = tl.load(sin_ptr + offsets, mask=mask[:, None], other=0.0)
            k_first, k_second = k_first * cos - k_second * sin, k_second * cos + k_first * sin
        scores = (
            tl.sum(k_first * q_first[None, :], 1) + tl.sum(k_second * q_second[None, :], 1)
        ) * scale
        scores = tl.where(mask, scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 0))
        correction = tl.exp(row_max - new_max)
        probs = tl.exp(scores - new_max)
        v_first = tl.load(value_ptr + offsets, mask=mask[:, None], other=0.0)
        v_second = tl.load(value_ptr + offsets + HALF, mask=mask[:, None], other=0.0)
        acc_first = acc_first * correction + tl.sum(probs[:, None] * v_first, 0)
        acc_second = acc_second * correction + tl.sum(probs[:, None] * v_second, 0)
        row_sum = row_sum * correction + tl.sum(probs, 0)
        row_max = new_max
    tl.store(out_ptr + lo, acc_first / row_sum)
    tl.store(out_ptr + HALF + lo, acc_second / row_sum)


def triton_costs(tokens: int, head_dim: int, repeats: int) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    half = head_dim // 2
    keys = torch.randn(tokens, head_dim, device=device)
    values = torch.randn(tokens, head_dim, device=device)
    query = torch.randn(head_dim, device=device)
    angles = torch.rand(tokens, half, device=device) * 6.28
    cos = torch.cat([angles.cos(), angles.cos()], 1).contiguous()
    sin = torch.cat([angles.sin(), angles.sin()], 1).contiguous()
    turned = torch.empty_like(keys)
    out = torch.empty(head_dim, device=device)

    def rotate_copy() -> None:
        grid = (triton.cdiv(tokens, 64),)
        _rotate_copy_kernel[grid](keys, turned, cos, sin, tokens, HALF=half, BLOCK_N=64)

    def decode(rotate: bool) -> None:
        _decode_kernel[(1,)](
            query, keys, values, cos, sin, out, tokens, head_dim**-0.5,
            HALF=half, BLOCK_N=64, ROTATE=rotate,
        )  # fmt: skip

    decode(True)  # compile (or warm the interpreter) before timing
    decode(False)
    rotate_copy()
    # the fused turn gives what attention over turned keys gives
    decode(True)
    fused = out.clone()
    rotate_copy()
    _decode_kernel[(1,)](
        query, turned, values, cos, sin, out, tokens, head_dim**-0.5,
        HALF=half, BLOCK_N=64, ROTATE=False,
    )  # fmt: skip
    torch.testing.assert_close(fused, out, rtol=1e-4, atol=1e-4)
    once = best_ms(rotate_copy, repeats)
    plain = best_ms(lambda: decode(False), repeats)
    rotated = best_ms(lambda: decode(True), repeats)
    extra = rotated - plain
    return {
        "mode": "compiled" if device == "cuda" else "interpreter (TRITON_INTERPRET=1)",
        "shape": {"tokens": tokens, "head_dim": head_dim, "heads": 1, "layers": 1},
        "rotate_copy_ms": once,
        "decode_plain_ms": plain,
        "decode_rotate_on_read_ms": rotated,
        "rotate_on_read_extra_ms_per_step": extra,
        "break_even_decode_steps": once / extra if extra > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="library name or path (default model)")
    parser.add_argument("--passage-tokens", type=int, default=1000)
    parser.add_argument(
        "--triton-tokens", type=int, default=256, help="small: the interpreter is slow"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    report = {
        "machine": machine_report(),
        "torch_cpu": torch_costs(args.model, args.passage_tokens, args.repeats),
        "triton": triton_costs(args.triton_tokens, 128, args.repeats),
    }
    for part in ("torch_cpu", "triton"):
        print(part, report[part])
    print(f"saved {save_result('passage_rotation', report)}")


if __name__ == "__main__":
    main()
