"""How fast a decode step's bf16 matmuls read their weights, plain against oneDNN-packed.

    python -m bench.linear_layouts [--rows 1,8,64,512] [--passes 5]

One decode step reads every weight once, so its linears are memory-bound: this times a
24-layer stack of Qwen2.5-0.5B's four projection shapes (716 MB of bf16 weights, far
more than any cache), run as `aten::mm` on the plain [out, in] weights and as
`mkldnn::_linear_pointwise` on the same weights packed once (what
engine/models/packed_linear.py does at load), and checks the two give equal outputs.
"""

import argparse
import time

import torch

from bench.retrieval_metrics import machine, save_result
from engine.models.packed_linear import PackedLinear, can_pack

LAYERS = 24
SHAPES = [(1152, 896), (896, 896), (9728, 896), (896, 4864)]  # qkv, o, gate_up, down


def main() -> None:
    args = parse_args()
    if not can_pack(torch.bfloat16, torch.device("cpu")):
        raise SystemExit("no oneDNN bf16 on this CPU: nothing to compare")
    torch.manual_seed(0)
    weights = [[torch.randn(o, i).bfloat16() for o, i in SHAPES] for _ in range(LAYERS)]
    packed = [[PackedLinear(w, None) for w in layer] for layer in weights]
    megabytes = sum(w.numel() * 2 for layer in weights for w in layer) / 1e6
    rows_out = []
    for rows in args.rows:
        inputs = {i: torch.randn(rows, i).bfloat16() for i in (896, 4864)}

        def plain(inputs: dict[int, torch.Tensor] = inputs) -> None:
            for layer in weights:
                for weight in layer:
                    inputs[weight.shape[1]] @ weight.t()

        def packed_pass(inputs: dict[int, torch.Tensor] = inputs) -> None:
            for layer in packed:
                for linear in layer:
                    linear(inputs[linear.in_features])

        plain_ms, packed_ms = timed(plain, args), timed(packed_pass, args)
        equal = all(
            torch.equal(inputs[w.shape[1]] @ w.t(), p(inputs[p.in_features]))
            for w, p in zip(weights[0], packed[0], strict=True)
        )
        rows_out.append({"rows": rows, "plain_ms": plain_ms, "packed_ms": packed_ms})
        rows_out[-1]["equal"] = equal
        print(
            f"{rows} rows, {megabytes:.0f} MB: aten::mm {plain_ms:.1f} ms "
            f"({megabytes / plain_ms:.1f} GB/s), packed {packed_ms:.1f} ms "
            f"({megabytes / packed_ms:.1f} GB/s), equal outputs: {equal}",
            flush=True,
        )
    path = save_result("linear_layouts", {"machine": machine(), "runs": rows_out})
    print(f"saved {path}")


def timed(run, args: argparse.Namespace) -> float:
    """Milliseconds per pass, after one warm-up pass."""
    run()
    started = time.perf_counter()
    for _ in range(args.passes):
        run()
    return (time.perf_counter() - started) / args.passes * 1e3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=lambda t: [int(r) for r in t.split(",")], default=[1, 8, 64, 512]
    )
    parser.add_argument("--passes", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    main()
