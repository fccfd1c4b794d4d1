"""Weight-only int8 and int4 linears: a decode step reads a half or a quarter of the bytes.

Decoding one token reads every weight once, so on a CPU its time is the weight bytes over
the memory bandwidth. int8 keeps one scale per output channel (symmetric); int4 keeps a
scale and a zero per group of `group_size` input columns (asymmetric, the layout of
llama.cpp's Q4_K sub-blocks and of torch's int4 kernels).

On a CPU with AVX2, both run on the project's own kernel (`kernels/cpu_quantized.c`)
for every batch: it multiplies the stored values where they are loaded with integer
copies of each row (a scale per group of columns), so a decode step streams the weights at
memory speed and a prefill beats dequantizing for an fp32 matmul. Elsewhere (no
compiler) torch's fused kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`)
are built for decode: up to KERNEL_MAX_ROWS rows (a decode batch) run on them, and a
prefill chunk of many rows dequantizes the weight and runs the ordinary matmul. Off the
CPU the same dequantize-then-matmul path runs for every batch.
"""

import ctypes
import threading
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from kernels import cpu_quantized
from kernels.cpu_build import cpu_flags

INT4_PACK_ROWS = 16  # torch's CPU int4 packing needs output channels in multiples of this
INT4_INNER_K_TILES = 2  # torch's CPU int4 packing parameter; 2, 4 and 8 measured alike here
# Rows up to which the fused kernels beat dequantizing the weight for a bf16 matmul. Their
# time grows with the rows (each row is a matvec), but dequantizing costs many matvecs:
# on an AVX-512 BF16 EPYC (2 cores), for Qwen2.5-0.5B's shapes at 32 rows, int4 896 ->
# 9,728 took 3.3 ms against 16 ms, int8 3.7 against 3.5 ms, and the int8 LM head
# (896 -> 151,936) 106 against 246 ms. A decode batch stays on the kernels; a prefill
# chunk of hundreds of rows dequantizes.
KERNEL_MAX_ROWS = 32
# NOTE: the fused CPU kernels always run on bf16 activations. With fp32 ones (the engine's
# dtype on CPUs without native bf16) they have no fast path: on an AVX2-only EPYC a
# 896 -> 9728 int4 matvec took 20.2 ms in fp32 against 0.63 ms in bf16 (int8: 4.0 vs
# 0.37 ms; the fp32 dense matvec 3.0 ms). Rounding a few rows to bf16 costs less than
# the 4-bit weights already do.
KERNEL_DTYPE = torch.bfloat16


@dataclass(frozen=True)
class QuantizationConfig:
    """Which weight-only quantization the engine applies to its linears."""

    method: str  # "int8" (per output channel) or "int4" (group-wise)
    group_size: int = 32  # int4: input columns sharing a scale and a zero (Q4_K uses 32)
    # int8 on the CPU: decode rows quantized too, each on its own, for fbgemm's int8 GEMM
    int8_activations: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("int8", "int4"):
            raise ValueError(f"quantization method must be int8 or int4, got {self.method!r}")
        if self.method == "int4" and (self.group_size < 16 or self.group_size % 16):
            raise ValueError(
                "int4 group size must be a multiple of 16 (32, 64, 128, ...), "
                f"got {self.group_size}"
            )

    @property
    def tag(self) -> str:
        """Names the quantized weights on disk: `int8`, `int4-g32`."""
        return self.method if self.method == "int8" else f"int4-g{self.group_size}"

    def for_linear(self, name: str) -> "QuantizationConfig":
        """The config a given linear gets: the LM head is int8 with int8 decode rows.

        NOTE: int8 as llama.cpp's Q4_K_M keeps its output matrix at 6 bits: int4 there
        cost Qwen2.5-Coder-0.5B 1.6% more perplexity on SciFact (bench.quantization). The
        head is the largest matrix a decode step reads (0.14 GB of int8 for the 0.5B,
        0.23 GB for the 1.5B), and torch's weight-only int8 kernel reads it at 13-16 GB/s
        where fbgemm's int8 GEMM reads 35-40 (`_fbgemm_rows`). Over 2,000 positions of
        SciFact text the 0.5B's int8 head then picks the same top token as the exact
        int8 head for 98.4% of them against 98.9% with the weight-only kernel.
        """
        if name == "lm_head":
            return QuantizationConfig("int8", int8_activations=fbgemm_available())
        return self

    def fits(self, linear: nn.Linear) -> bool:
        """Whether a linear's shape suits the method (int4 packs rows and groups columns)."""
        if self.method == "int8":
            return True
        return (
            linear.out_features % INT4_PACK_ROWS == 0 and linear.in_features % self.group_size == 0
        )


def fbgemm_available() -> bool:
    """fbgemm's int8 GEMM runs here at full range: it multiplies uint8 rows by int8 weights,
    and without VNNI (`vpmaddubsw`) its int16 pair sums saturate. On an AVX2 EPYC that gave
    errors of 19% of the largest logit (a 256 x 1,024 head, 3 rows); 7-bit rows, 1.4%,
    and a different top token in 1 row of 3."""
    return (
        "fbgemm" in torch.backends.quantized.supported_engines
        and hasattr(torch.ops.quantized, "linear_dynamic")
        and "avx512_vnni" in cpu_flags()
    )


def quantize_int8(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric per-row int8: weight ≈ qweight * scales[:, None]."""
    w = weight.float()  # [out, in]
    scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-10)  # [out] float32: only `out` of them
    qweight = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return {"qweight": qweight, "scales": scales}


def dequantize_int8(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype, out: torch.Tensor | None = None
) -> torch.Tensor:
    weight = tensors["qweight"].to(dtype) if out is None else out.copy_(tensors["qweight"])
    return weight.mul_(tensors["scales"].to(dtype)[:, None])


def quantize_int4(weight: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
    """Asymmetric group-wise int4: weight ≈ (q - 8) * scale + zero, q in 0..15.

    Each group takes, of the grids in `_int4_grids`, the one with the least squared
    error. Plain min/max is the first of them; the others span fewer of the 16 levels,
    which recovers weights that were already 4-bit (the default models' weights come from
    Q4_K blocks, whose own scale seldom uses every level) instead of rounding them again.

    Returns `qweight` as two values a byte (even column in the low nibble), and the
    per-group `scales` and `zeros`, each [out, in / group_size] in bf16 (the kernel's
    dtype; float32 would make them outweigh the int4 values).
    """
    out_features, in_features = weight.shape
    w = weight.float().reshape(out_features, in_features // group_size, group_size)
    low = w.amin(dim=-1, keepdim=True)  # [out, groups, 1]
    span = (w.amax(dim=-1, keepdim=True) - low).clamp(min=1e-10)
    best_error = torch.full_like(low, float("inf"))
    best_scales, best_low = span / 15, low
    for levels, shift in _int4_grids():
        scales = span / levels
        grid_low = low - shift * scales
        q = torch.round((w - grid_low) / scales).clamp(0, 15)
        error = (q * scales + grid_low - w).square().sum(dim=-1, keepdim=True)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_scales = torch.where(better, scales, best_scales)
        best_low = torch.where(better, grid_low, best_low)
    q = torch.round((w - best_low) / best_scales).clamp(0, 15).to(torch.uint8)
    q = q.reshape(out_features, -1)
    return {
        "qweight": q[:, 0::2] | (q[:, 1::2] << 4),  # [out, in / 2] uint8
        "scales": best_scales.squeeze(-1).to(torch.bfloat16),
        "zeros": (best_low + 8 * best_scales).squeeze(-1).to(torch.bfloat16),
    }


def _int4_grids() -> list[tuple[int, int]]:
    """(levels between the group's min and max, levels below its min): min/max first."""
    return [(levels, shift) for levels in range(15, 9, -1) for shift in range(16 - levels)]


def unpack_int4(
    qweight: torch.Tensor, dtype: torch.dtype = torch.uint8, out: torch.Tensor | None = None
) -> torch.Tensor:
    """[out, in / 2] uint8 -> [out, in] values 0..15 in `dtype` (or into `out`)."""
    rows, half = qweight.shape
    if out is None:
        out = torch.empty(rows, half * 2, dtype=dtype, device=qweight.device)
    values = out.view(rows, half, 2)  # each nibble written in place
    torch.bitwise_and(qweight, 15, out=values[..., 0])
    torch.bitwise_right_shift(qweight, 4, out=values[..., 1])
    return out


def dequantize_int4(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype, out: torch.Tensor | None = None
) -> torch.Tensor:
    """q * scale + (zero - 8 * scale), computed in place in the output's dtype.

    NOTE: every prefill step dequantizes every linear, so this is on the time to first
    token. Nibbles unpacked straight into `dtype`, then an in-place multiply and add:
    five times faster than one out-of-place addcmul over broadcast scales (1.5B model,
    1,000-token prefill: 2 s of 12), at the cost of rounding twice in bf16 (one ulp of
    the weight, far below the int4 step).
    """
    weight = unpack_int4(tensors["qweight"], dtype, out)
    scales = tensors["scales"]
    groups = scales.shape[1]
    offsets = (tensors["zeros"].float() - 8 * scales.float()).to(dtype).unsqueeze(-1)
    grouped = weight.view(weight.shape[0], groups, -1)  # [out, groups, group_size]
    grouped.mul_(scales.to(dtype).unsqueeze(-1)).add_(offsets)
    return weight


class QuantizedLinear(nn.Module):
    """A linear whose weight is held as int8 or int4 and never stored in full precision."""

    qweight: torch.Tensor  # int8 [out, in], or uint8 [out, in / 2] holding two int4 values
    scales: torch.Tensor  # int8: [out]; int4: [out, groups]
    zeros: torch.Tensor  # int4 only: [out, groups], the value q = 8 stands for
    kernel_weight: torch.Tensor  # on the CPU: a kernel's own layout of qweight
    kernel_scales: torch.Tensor  # on the CPU: scales (int4: with zeros) in the kernel's layout
    bias: torch.Tensor | None

    def __init__(
        self,
        config: QuantizationConfig,
        tensors: dict[str, torch.Tensor],  # from quantize_int8 / quantize_int4, on the device
        bias: torch.Tensor | None,
        dtype: torch.dtype,  # of activations and outputs
    ) -> None:
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.out_features, self.in_features = tensors["qweight"].shape
        if config.method == "int4":
            self.in_features *= 2  # two values a byte
        for name, tensor in tensors.items():
            self.register_buffer(name, _aligned(tensor))
        self.register_buffer("bias", bias)
        self.use_kernel = tensors["qweight"].device.type == "cpu"
        self.library: ctypes.CDLL | None = None  # the project's kernel, where it fits
        library = cpu_quantized.quantized_kernel() if self.use_kernel else None
        if library is not None and cpu_quantized.fits(
            config.method, self.out_features, self.in_features, config.group_size
        ):
            self._tile_for_cpu(library)
        elif self.use_kernel and config.method == "int4":
            self._pack_int4_for_cpu()
        elif self.use_kernel and config.int8_activations:
            self._pack_int8_for_fbgemm()
        elif self.use_kernel:
            self.register_buffer("kernel_scales", self.scales.to(KERNEL_DTYPE), persistent=False)

    def _tile_for_cpu(self, library: ctypes.CDLL) -> None:
        if self.config.method == "int4":
            values = unpack_int4(self.qweight)
            packed, scales = cpu_quantized.tile_int4(values, self.scales, self.zeros)
        else:
            packed, scales = cpu_quantized.tile_int8(self.qweight), self.scales.float()
        self.register_buffer("kernel_weight", packed, persistent=False)
        self.register_buffer("kernel_scales", scales, persistent=False)
        self.kernel_bias = None if self.bias is None else self.bias.float()
        self.library = library

    def _pack_int4_for_cpu(self) -> None:
        q = unpack_int4(self.qweight, torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
        # NOTE: the kernel reads [groups, out, 2] (scale, zero) in the activation dtype.
        scales_and_zeros = torch.stack([self.scales, self.zeros], dim=-1).transpose(0, 1)
        self.register_buffer("kernel_weight", packed, persistent=False)
        self.register_buffer(
            "kernel_scales", scales_and_zeros.contiguous().to(KERNEL_DTYPE), persistent=False
        )

    def _pack_int8_for_fbgemm(self) -> None:
        """fbgemm's own layout of the int8 weight (a second copy, as large as `qweight`)."""
        channels = self.scales.shape[0]
        with warnings.catch_warnings():
            # NOTE: torch deprecates its quantized tensors (for torchao) but the pinned
            # torch has them, and `fbgemm_available` turns this path off once they go.
            warnings.simplefilter("ignore", UserWarning)
            weight = torch._make_per_channel_quantized_tensor(
                self.qweight, self.scales.double(), torch.zeros(channels, dtype=torch.long), 0
            )
        self.fbgemm_weight = torch.ops.quantized.linear_prepack(weight, None)

    def tensors(self) -> dict[str, torch.Tensor]:
        """What is saved: the portable layout, not the CPU kernel's packing."""
        names = (
            ("qweight", "scales")
            if self.config.method == "int8"
            else ("qweight", "scales", "zeros")
        )
        return {name: getattr(self, name) for name in names}

    def dequantized_weight(self, out: torch.Tensor | None = None) -> torch.Tensor:  # [out, in]
        if self.config.method == "int8":
            return dequantize_int8(self.tensors(), self.dtype, out)
        return dequantize_int4(self.tensors(), self.dtype, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        rows = x.reshape(-1, x.shape[-1])  # [N, in]
        if self.library is not None:
            linear = (
                cpu_quantized.linear_int4
                if self.config.method == "int4"
                else cpu_quantized.linear_int8
            )
            out = linear(
                self.library, rows, self.kernel_weight, self.kernel_scales, self.kernel_bias
            )
            return out.to(self.dtype).reshape(*x.shape[:-1], self.out_features)
        if self.use_kernel and self.config.int8_activations and len(rows) <= KERNEL_MAX_ROWS:
            out = _fbgemm_rows(rows, self.fbgemm_weight).to(self.dtype)
        elif self.use_kernel and self.config.method == "int8" and len(rows) <= KERNEL_MAX_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(
                rows.to(KERNEL_DTYPE), self.qweight, self.kernel_scales
            ).to(self.dtype)
        elif self.use_kernel and self.config.method == "int4" and len(rows) <= KERNEL_MAX_ROWS:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                rows.to(KERNEL_DTYPE),
                self.kernel_weight,
                self.config.group_size,
                self.kernel_scales,
            ).to(self.dtype)
        else:
            scratch = _scratch(self.out_features * x.shape[-1], self.dtype, x.device)
            weight = self.dequantized_weight(scratch.view(self.out_features, -1))
            out = nn.functional.linear(rows, weight)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def _fbgemm_rows(rows: torch.Tensor, packed: torch.ScriptObject) -> torch.Tensor:
    """rows @ weight.T with each row quantized to int8 on its own: fbgemm's int8 GEMM.

    fbgemm quantizes its whole input with one range, which would make a row's result
    depend on the rows beside it. So each row is divided by its largest magnitude, and
    one more row, (1, -1, 0, ...), pins the range to [-1, 1] whatever the batch; the
    outputs are scaled back. A row's logits are then the same alone or in any batch.
    """
    rows = rows.float()
    peaks = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)  # [N, 1]
    pinned = rows.new_zeros(1, rows.shape[1])
    pinned[0, 0], pinned[0, 1] = 1.0, -1.0
    scaled = torch.cat([rows / peaks, pinned])
    out = torch.ops.quantized.linear_dynamic(scaled, packed, False)  # reduce_range off
    return out[:-1] * peaks


class _Scratch(threading.local):
    """Each thread's buffer the prefill path dequantizes weights into, one at a time.

    NOTE: a fresh buffer per linear is fresh pages: on the 1.5B model a prefill step
    dequantizes 2.6 GB, and first-touch page faults cost about a second of it. The
    buffer keeps the size of the largest weight dequantized so far (the LM head's,
    once a step samples more than KERNEL_MAX_ROWS rows).
    """

    buffer: torch.Tensor | None = None


_SCRATCH = _Scratch()


def _scratch(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A flat buffer of `numel` elements, grown to the largest weight asked for."""
    buffer = _SCRATCH.buffer
    if buffer is None or buffer.dtype != dtype or buffer.device != device or buffer.numel() < numel:
        buffer = torch.empty(numel, dtype=dtype, device=device)
        _SCRATCH.buffer = buffer
    return buffer[:numel]


# NOTE: torch's CPU int8 kernel loads its weight with aligned vector loads: a 4-row call
# on an int8 weight 8 bytes off a 64-byte boundary crashes the process (torch 2.13.0).
# Tensors read back from a safetensors file sit wherever the file put them.
ALIGNMENT = 64


def _aligned(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself if it starts on an ALIGNMENT-byte boundary, else an aligned copy."""
    if tensor.data_ptr() % ALIGNMENT == 0:
        return tensor
    return tensor.clone()  # torch's CPU allocator aligns to 64 bytes


def quantize_linear(
    linear: nn.Linear, config: QuantizationConfig, dtype: torch.dtype
) -> QuantizedLinear:
    """The quantized replacement for a full-precision linear."""
    weight = linear.weight.detach()
    if config.method == "int8":
        tensors = quantize_int8(weight)
    else:
        tensors = quantize_int4(weight, config.group_size)
    bias = None if linear.bias is None else linear.bias.detach()
    return QuantizedLinear(config, tensors, bias, dtype)


def quantize_model(
    model: nn.Module,
    config: QuantizationConfig,
    dtype: torch.dtype,
    saved: dict[str, torch.Tensor],
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Swap every linear that fits the method for its quantized form, in place.

    Args:
        model: the decoder with its full-precision weights loaded.
        config: the method and group size.
        dtype: the model's activation dtype.
        saved: tensors from an earlier run (`<linear>.<tensor>`); a linear found there is
            taken as saved instead of being quantized again (its own weight may then be
            unallocated, on the meta device).
        device: where the quantized linears live; by default, their weights' device.

    Returns:
        Every quantized linear's tensors, to save for the next start.
    """
    quantized: dict[str, torch.Tensor] = {}
    for name, linear in list(model.named_modules()):
        if not isinstance(linear, nn.Linear):
            continue
        linear_config = config.for_linear(name)
        if not linear_config.fits(linear):
            continue
        prefix = f"{name}."
        tensors = {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
        if tensors:
            tensors = {k: v.to(device or linear.weight.device) for k, v in tensors.items()}
            bias = None if linear.bias is None else linear.bias.detach()
            replacement = QuantizedLinear(linear_config, tensors, bias, dtype)
        else:
            replacement = quantize_linear(linear, linear_config, dtype)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacement)
        quantized.update({prefix + k: v for k, v in replacement.tensors().items()})
    return quantized
