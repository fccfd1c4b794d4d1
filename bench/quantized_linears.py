"""How fast the int4 linears run: the project's CPU kernel against torch's.

    python -m bench.quantized_linears [--rows 1,8,64,512] [--passes 5]

Times a 28-layer stack of Qwen2.5-Coder-1.5B's four projection shapes quantized to int4
(group 32, 0.87 GB with scales and zeros: far more than any cache, as in a decode step),
and its int8 LM head, through `QuantizedLinear` twice: on `kernels/cpu_quantized.c`,
and as the engine ran them before it (torch's `_weight_int4pack_mm_for_cpu` up to 32
rows, dequantize-then-matmul beyond; fbgemm's or torch's int8 kernel for the head).
Passes alternate between the two, and the outputs are compared.
"""

import argparse
import time
from collections.abc import Callable
from unittest import mock

import torch

from bench.retrieval_metrics import machine, save_result
from engine.device import resolve_dtype
from engine.models.quantization import (
    QuantizationConfig,
    QuantizedLinear,
    quantize_int4,
    quantize_int8,
)
from kernels import cpu_quantized

LAYERS = 28
SHAPES = [(2048, 1536), (1536, 1536), (17920, 1536), (1536, 8960)]  # qkv, o, gate_up, down
HEAD = (151936, 1536)
GROUP = 32


def main() -> None:
    args = parse_args()
    if cpu_quantized.quantized_kernel() is None:
        raise SystemExit("the project's quantized kernel does not run on this CPU")
    dtype = resolve_dtype(None, torch.device("cpu"))  # the engine's activations here
    torch.manual_seed(0)
    config = QuantizationConfig("int4", GROUP)
    tensors = [quantize_int4(torch.randn(o, i) * 0.02, GROUP) for o, i in SHAPES]
    head_tensors = quantize_int8(torch.randn(*HEAD) * 0.02)
    head_config = config.for_linear("lm_head")

    def build() -> tuple[list[list[QuantizedLinear]], QuantizedLinear]:
        layers = [
            [QuantizedLinear(config, _copy(t), None, dtype) for t in tensors] for _ in range(LAYERS)
        ]
        return layers, QuantizedLinear(head_config, head_tensors, None, dtype)

    ours = build()
    with mock.patch.object(cpu_quantized, "quantized_kernel", lambda: None):
        theirs = build()
    gigabytes = sum(t.numel() * t.element_size() for t in _stack_tensors(ours[0])) / 1e9
    head_gb = sum(t.numel() * t.element_size() for t in head_tensors.values()) / 1e9
    results = []
    for rows in args.rows:
        inputs = {i: torch.randn(rows, i, dtype=dtype) for i in (1536, 8960)}
        passes = {}
        for name, (stack, head) in (("ours", ours), ("torch", theirs)):
            passes[f"{name} stack"] = _stack_pass(stack, inputs)
            passes[f"{name} head"] = _head_pass(head, inputs)
        times = _alternating(passes, args.passes)
        layer_flops = 2 * rows * sum(o * i for o, i in SHAPES) * LAYERS
        difference = _relative_difference(ours[0][0][2], theirs[0][0][2], inputs[1536])
        result = {"rows": rows, "stack_gb": gigabytes, "head_gb": head_gb, **times}
        result["relative_difference_gate_up"] = difference
        results.append(result)
        print(
            f"{rows} rows: stack ({gigabytes:.2f} GB) ours {times['ours stack']:.1f} ms "
            f"({gigabytes / times['ours stack'] * 1e3:.1f} GB/s, "
            f"{layer_flops / times['ours stack'] / 1e6:.0f} GFLOP/s), torch "
            f"{times['torch stack']:.1f} ms ({gigabytes / times['torch stack'] * 1e3:.1f} GB/s); "
            f"int8 head ({head_gb:.2f} GB) ours {times['ours head']:.1f} ms, torch "
            f"{times['torch head']:.1f} ms; outputs differ by {difference:.1e} (relative)",
            flush=True,
        )
    path = save_result("quantized_linears", {"machine": machine(), "runs": results})
    print(f"saved {path}")


def _copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each layer its own memory, so a pass streams from DRAM as a decode step does."""
    return {name: tensor.clone() for name, tensor in tensors.items()}


def _stack_tensors(stack: list[list[QuantizedLinear]]) -> list[torch.Tensor]:
    return [t for layer in stack for linear in layer for t in linear.tensors().values()]


def _stack_pass(stack: list[list[QuantizedLinear]], inputs: dict[int, torch.Tensor]) -> Callable:
    def run() -> None:
        for layer in stack:
            for linear in layer:
                linear(inputs[linear.in_features])

    return run


def _head_pass(head: QuantizedLinear, inputs: dict[int, torch.Tensor]) -> Callable:
    return lambda: head(inputs[head.in_features])


def _alternating(passes: dict[str, Callable], count: int) -> dict[str, float]:
    """Median milliseconds of each, after one warm-up each, in alternating order."""
    for run in passes.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(count):
        for name, run in passes.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def _relative_difference(a: QuantizedLinear, b: QuantizedLinear, x: torch.Tensor) -> float:
    """Largest difference of the two paths' outputs, over the largest output."""
    out_a, out_b = a(x).float(), b(x).float()
    return ((out_a - out_b).abs().max() / out_b.abs().max()).item()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=lambda s: [int(r) for r in s.split(",")], default=[1, 8, 64, 512]
    )
    parser.add_argument("--passes", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    main()
