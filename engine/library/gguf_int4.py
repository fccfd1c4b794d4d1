"""A GGUF's Q4_K blocks -> the engine's int4 weights, exactly, once at pull time.

A Q4_K super-block holds 256 weights as 8 groups of 32, each weight `d·sc·q − dmin·m`
with a 4-bit q and 6-bit sc and m. That is the engine's int4 layout (a scale and a zero
per 32 input columns) with scale = d·sc and zero = 8·scale − dmin·m. Copying the blocks
keeps the very weights llama.cpp serves, in seconds; quantizing the dequantized weights
again would spend minutes searching for that grid (a 1.5B model on 2 cores) and round
some of it away. Tensors of other types (Q6_K, in a Q4_K_M file) are dequantized and
quantized like any other weight; the LM head becomes int8, as the engine keeps it.
"""

import re
from pathlib import Path

import numpy as np
import torch

from engine.models.decoder import DecoderForCausalLM
from engine.models.quantization import QuantizationConfig, quantize_int4, quantize_int8

Q4_K_GROUP_SIZE = 32  # weights per (scale, min) pair in a Q4_K super-block
_SUPER_BLOCK = 256  # weights per Q4_K super-block
_BLOCK_BYTES = 144  # fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles
# GGUF tensor name (in a layer) -> Hugging Face module name, as transformers maps them.
_LAYER_MODULES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.weight")


def int4_weights(gguf_path: Path, config: QuantizationConfig) -> dict[str, torch.Tensor]:
    """Every linear's quantized tensors, named as `quantize_model` names them.

    Args:
        gguf_path: a GGUF of a model `DecoderForCausalLM` runs (llama, qwen2).
        config: int4 with group size 32 (Q4_K's); anything else is a caller's bug.

    Returns:
        `<module>.<tensor>` -> tensor: int4 for the layers' linears (fused QKV and
        gate/up projections concatenated by rows), int8 for the LM head.
    """
    from gguf import GGUFReader  # imported here: numpy-heavy, unneeded by fast commands

    if config.method != "int4" or config.group_size != Q4_K_GROUP_SIZE:
        raise RuntimeError(f"Q4_K blocks map to int4 with groups of 32, not {config.tag}")
    tensors = {tensor.name: tensor for tensor in GGUFReader(gguf_path).tensors}
    # A tied model has no output matrix: its embedding is the head.
    head = tensors.get("output.weight") or tensors["token_embd.weight"]
    weights = {f"lm_head.{k}": v for k, v in quantize_int8(_dequantized(head)).items()}
    shards: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for name, tensor in tensors.items():
        module, shard = _engine_module(name)
        if module is not None:
            shards.setdefault(module, {})[shard] = _int4(tensor, config)
    for module, parts in shards.items():
        for name in ("qweight", "scales", "zeros"):
            weights[f"{module}.{name}"] = torch.cat([parts[i][name] for i in sorted(parts)])
    return weights


def q4k_to_int4(blocks: torch.Tensor, rows: int, columns: int) -> dict[str, torch.Tensor]:
    """Q4_K super-blocks ([rows, columns / 256 · 144] uint8) -> qweight, scales, zeros."""
    raw = blocks.reshape(rows, columns // _SUPER_BLOCK, _BLOCK_BYTES)
    d = raw[..., 0:2].contiguous().view(torch.float16).float()  # [rows, blocks, 1]
    dmin = raw[..., 2:4].contiguous().view(torch.float16).float()  # [rows, blocks, 1]
    scales, mins = _six_bit_scales(raw[..., 4:16])  # [rows, blocks, 8] each
    nibbles = raw[..., 16:].reshape(rows, -1, 4, 1, 32)  # 4 chunks of 32 bytes, 2 groups each
    # Group 2c holds the low nibbles of chunk c, group 2c + 1 its high nibbles.
    q = torch.cat([nibbles & 15, nibbles >> 4], dim=3).reshape(rows, columns)  # [rows, cols]
    scale = (d * scales).reshape(rows, -1)  # [rows, groups]
    offset = (dmin * mins).reshape(rows, -1)  # [rows, groups]: the value q = 0 lacks
    return {
        "qweight": q[:, 0::2] | (q[:, 1::2] << 4),  # [rows, cols / 2] uint8, as quantize_int4
        "scales": scale.to(torch.bfloat16),
        "zeros": (8 * scale - offset).to(torch.bfloat16),
    }


def _six_bit_scales(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """12 bytes -> 8 scales and 8 mins of 6 bits ([..., 12] uint8 -> two [..., 8] float).

    Bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits; scales and mins
    4-7 keep their low 4 bits in bytes 8-11 and their top 2 in the spare bits of 0-7.
    """
    first, second, third = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    scales = torch.cat([first & 63, (third & 15) | ((first >> 6) << 4)], dim=-1)
    mins = torch.cat([second & 63, (third >> 4) | ((second >> 6) << 4)], dim=-1)
    return scales.float(), mins.float()


def _engine_module(gguf_name: str) -> tuple[str | None, int]:
    """A layer tensor's engine module (fused projections included) and its shard."""
    match = _LAYER_TENSOR.fullmatch(gguf_name)
    if match is None or match[2] not in _LAYER_MODULES:
        return None, 0
    hf_name = f"model.layers.{match[1]}.{_LAYER_MODULES[match[2]]}."
    for fragment, (fused, shard) in DecoderForCausalLM.FUSED_SHARDS.items():
        if fragment in hf_name:
            return hf_name.replace(fragment, fused)[:-1], shard
    return hf_name[:-1], 0


def _int4(tensor, config: QuantizationConfig) -> dict[str, torch.Tensor]:
    columns, rows = (int(n) for n in tensor.shape)  # GGUF lists the fastest dimension first
    if tensor.tensor_type.name == "Q4_K":
        return q4k_to_int4(torch.from_numpy(np.array(tensor.data)), rows, columns)
    return quantize_int4(_dequantized(tensor), config.group_size)


def _dequantized(tensor) -> torch.Tensor:  # [rows, columns] float32
    from gguf.quants import dequantize

    columns, rows = (int(n) for n in tensor.shape)
    values = dequantize(np.asarray(tensor.data), tensor.tensor_type)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(rows, columns)
