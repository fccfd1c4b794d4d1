"""Paged attention on a GPU: the Triton kernels vs the PyTorch reference vs SDPA.

    python -m bench.attention_kernels [--num-heads 32 --num-kv-heads 8 --head-dim 128]
        [--dtype bfloat16] [--block-size 16] [--max-kv-gib 16]

CUDA only: on a machine without a CUDA device it says so and exits with status 2.
The default shape is a Llama-3-8B attention layer (32 query heads, 8 KV heads).

- Decode, batch 1-256 x context 512-32k: one new token per sequence over a paged
  cache with shuffled block tables. Bandwidth is the bytes decode cannot avoid (every
  cached K and V once, the queries and outputs) over the time, as a fraction of the
  device's measured copy bandwidth (a 1 GiB device-to-device copy, read + write).
  Target: at least 70% at large batch x context.
- Prefill: batches of equal chunks behind equal cached prefixes; TFLOP/s counts the
  visible (causal) query-key pairs only.

SDPA (`scaled_dot_product_attention`) runs on contiguous [batch, heads, tokens,
head_dim] K and V, the layout it is built for, with a bottom-right causal mask for
chunks behind a prefix: it is the bar a paged kernel is held to. Every case also
checks the Triton output against SDPA's. Times are medians of `triton.testing.do_bench`
(L2 flushed between runs), with the 10th-90th percentile range in the JSON saved
under bench/results/.
"""

import argparse
import os
import platform
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.retrieval_metrics import save_result
from kernels import PagedAttentionMetadata, reference

DECODE_BATCHES = (1, 4, 16, 64, 256)
DECODE_CONTEXTS = (512, 2048, 8192, 32768)
# (sequences, cached prefix, new tokens): fresh prompts, then chunks behind prefixes,
# the last like RAG questions behind shared passages.
PREFILL_CASES = ((1, 0, 2048), (1, 0, 8192), (8, 0, 1024), (4, 3072, 1024), (32, 4096, 64))
BANDWIDTH_TARGET = 0.70
DEVICE = torch.device("cuda")
TIMES = ("Triton µs", "reference µs", "SDPA µs")
DECODE_COLUMNS = (
    *("batch", "context", "KV GiB", *TIMES),
    *("Triton % of copy", "SDPA % of copy", "Triton rel. error"),
)
PREFILL_COLUMNS = (
    *("seqs", "prefix", "new", *TIMES),
    *("Triton TFLOP/s", "SDPA TFLOP/s", "Triton rel. error"),
)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def time_ms(fn: Callable[[], object]) -> list[float] | None:
    """[p10, median, p90] milliseconds, or None when the device runs out of memory."""
    from triton.testing import do_bench

    try:
        return do_bench(fn, warmup=25, rep=200, quantiles=[0.1, 0.5, 0.9])
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def copy_bandwidth() -> float:
    """Bytes per second of a large device-to-device copy, counting the read and the write."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    times = time_ms(lambda: dst.copy_(src))
    assert times is not None
    return 2 * src.numel() / (times[1] * 1e-3)


def paged_batch(args, context_lens: list[int], query_lens: list[int]):
    """A paged cache holding every context in shuffled blocks, and its metadata."""
    device, dtype, block = DEVICE, DTYPES[args.dtype], args.block_size
    blocks_per_seq = [-(-n // block) for n in context_lens]
    shape = (sum(blocks_per_seq), block, args.num_kv_heads, args.head_dim)
    key_cache = torch.randn(shape, dtype=dtype, device=device)
    value_cache = torch.randn(shape, dtype=dtype, device=device)
    width = max(blocks_per_seq)
    order = torch.randperm(shape[0], device=device, dtype=torch.int32)
    tables = torch.zeros(len(context_lens), width, dtype=torch.int32, device=device)
    start = 0
    for row, count in enumerate(blocks_per_seq):
        tables[row, :count] = order[start : start + count]
        start += count
    starts = torch.tensor([0, *torch.tensor(query_lens).cumsum(0).tolist()], dtype=torch.int32)
    metadata = PagedAttentionMetadata(
        slot_mapping=torch.zeros(sum(query_lens), dtype=torch.int64, device=device),  # unused
        query_start_loc=starts.to(device),
        context_lens=torch.tensor(context_lens, dtype=torch.int32, device=device),
        block_tables=tables,
        num_decodes=sum(1 for n in query_lens if n == 1),
        query_lens_host=tuple(query_lens),
        context_lens_host=tuple(context_lens),
    )
    query = torch.randn(sum(query_lens), args.num_heads, args.head_dim, dtype=dtype, device=device)
    return query, key_cache, value_cache, metadata


def contiguous_kv(cache: torch.Tensor, metadata: PagedAttentionMetadata) -> torch.Tensor:
    """[batch, kv_heads, context, head_dim]: what SDPA reads (all contexts equal here)."""
    context_len = metadata.context_lens_host[0]
    gathered = reference.gather_kv(cache, metadata.block_tables)[:, :context_len]
    return gathered.transpose(1, 2).contiguous()


def run_case(args, context_lens, query_lens, sdpa_mask) -> dict:
    """Times the three implementations on one batch and checks Triton against SDPA."""
    from kernels import triton_attention

    query, key_cache, value_cache, metadata = paged_batch(args, context_lens, query_lens)
    scale = args.head_dim**-0.5
    keys, values = contiguous_kv(key_cache, metadata), contiguous_kv(value_cache, metadata)
    batch, query_len = len(query_lens), query_lens[0]
    sdpa_query = query.view(batch, query_len, args.num_heads, args.head_dim).transpose(1, 2)

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(
            sdpa_query, keys, values, attn_mask=sdpa_mask, scale=scale, enable_gqa=True
        )

    def triton() -> torch.Tensor:
        return triton_attention.paged_attention(query, key_cache, value_cache, metadata, scale)

    expected = sdpa().transpose(1, 2).reshape_as(query).float()
    error = (triton().float() - expected).norm() / expected.norm()
    times = {
        "triton": time_ms(triton),
        "reference": time_ms(
            lambda: reference.paged_attention(query, key_cache, value_cache, metadata, scale)
        ),
        "sdpa": time_ms(sdpa),
    }
    kv_bytes = 2 * sum(context_lens) * args.num_kv_heads * args.head_dim * query.element_size()
    return {"times_ms": times, "kv_bytes": kv_bytes, "rel_error_vs_sdpa": error.item()}


def decode_rows(args, bandwidth: float) -> list[dict]:
    rows = []
    per_token = 2 * args.num_kv_heads * args.head_dim * DTYPES[args.dtype].itemsize
    for batch in DECODE_BATCHES:
        for context in DECODE_CONTEXTS:
            if batch * context * per_token > args.max_kv_gib * 2**30:
                continue  # with SDPA's contiguous copy, twice this must fit
            row = {"batch": batch, "context": context}
            row.update(run_case(args, [context] * batch, [1] * batch, None))
            io_bytes = 2 * batch * args.num_heads * args.head_dim * DTYPES[args.dtype].itemsize
            for name, times in row["times_ms"].items():
                if times is not None:
                    achieved = (row["kv_bytes"] + io_bytes) / (times[1] * 1e-3)
                    row[f"{name}_fraction_of_copy"] = achieved / bandwidth
            rows.append(row)
            print(_decode_line(row), flush=True)
            torch.cuda.empty_cache()
    return rows


def prefill_rows(args) -> list[dict]:
    from torch.nn.attention.bias import causal_lower_right

    rows = []
    for num_seqs, prefix, new in PREFILL_CASES:
        mask = causal_lower_right(new, prefix + new)
        row = {"seqs": num_seqs, "prefix": prefix, "new": new}
        row.update(run_case(args, [prefix + new] * num_seqs, [new] * num_seqs, mask))
        pairs = num_seqs * (new * prefix + new * (new + 1) // 2)
        flops = 4 * pairs * args.num_heads * args.head_dim
        for name, times in row["times_ms"].items():
            if times is not None:
                row[f"{name}_tflops"] = flops / (times[1] * 1e-3) / 1e12
        rows.append(row)
        print(_prefill_line(row), flush=True)
        torch.cuda.empty_cache()
    return rows


def _header(columns: tuple[str, ...]) -> str:
    return f"| {' | '.join(columns)} |\n|{' --- |' * len(columns)}"


def _median(row: dict, name: str) -> str:
    times = row["times_ms"][name]
    return "OOM" if times is None else f"{times[1] * 1e3:,.0f}"


def _decode_line(row: dict) -> str:
    fraction = row.get("triton_fraction_of_copy")
    return (
        f"| {row['batch']} | {row['context']:,} | {row['kv_bytes'] / 2**30:.2f} | "
        f"{_median(row, 'triton')} | {_median(row, 'reference')} | {_median(row, 'sdpa')} | "
        f"{'-' if fraction is None else f'{fraction:.0%}'} | "
        f"{row.get('sdpa_fraction_of_copy', 0):.0%} | {row['rel_error_vs_sdpa']:.1e} |"
    )


def _prefill_line(row: dict) -> str:
    return (
        f"| {row['seqs']} | {row['prefix']:,} | {row['new']:,} | {_median(row, 'triton')} | "
        f"{_median(row, 'reference')} | {_median(row, 'sdpa')} | "
        f"{row.get('triton_tflops', 0):.0f} | {row.get('sdpa_tflops', 0):.0f} | "
        f"{row['rel_error_vs_sdpa']:.1e} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-heads", type=int, default=32)
    parser.add_argument("--num-kv-heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--max-kv-gib", type=float, default=16, help="largest decode KV cache")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench.attention_kernels needs a CUDA GPU; this machine has none", file=sys.stderr)
        sys.exit(2)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: this benchmark times the compiled kernels", file=sys.stderr)
        sys.exit(2)
    import triton

    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    device = torch.cuda.get_device_name()
    print(f"{device}: copy bandwidth {bandwidth / 1e9:,.0f} GB/s; {vars(args)}\n")
    print(_header(DECODE_COLUMNS))
    decode = decode_rows(args, bandwidth)
    print("\n" + _header(PREFILL_COLUMNS))
    prefill = prefill_rows(args)
    largest = max(decode, key=lambda row: row["kv_bytes"])
    reached = largest.get("triton_fraction_of_copy", 0.0)
    print(
        f"\ndecode at the largest batch x context ({largest['batch']} x {largest['context']:,}): "
        f"{reached:.0%} of copy bandwidth, target {BANDWIDTH_TARGET:.0%}: "
        f"{'met' if reached >= BANDWIDTH_TARGET else 'NOT met'}"
    )
    machine = {
        "device": device,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }
    result = {"machine": machine, "args": vars(args), "decode": decode, "prefill": prefill}
    print(f"saved {save_result('attention_kernels', result)}")


if __name__ == "__main__":
    main()
