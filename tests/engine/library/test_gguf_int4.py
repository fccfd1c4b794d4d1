"""Q4_K blocks -> int4 weights: checked against gguf's own dequantization, on a real file."""

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf.quants import dequantize

from engine.library.gguf_int4 import int4_weights, q4k_to_int4
from engine.models.config import DecoderConfig
from engine.models.decoder import DecoderForCausalLM
from engine.models.quantization import (
    QuantizationConfig,
    dequantize_int4,
    dequantize_int8,
    quantize_model,
)

Q4_K, Q6_K = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q6_K
INT4 = QuantizationConfig("int4")
HIDDEN, INTERMEDIATE, VOCAB, HEADS, KV_HEADS = 256, 512, 320, 4, 2
HEAD_DIM = HIDDEN // HEADS


def random_blocks(kind: gguf.GGMLQuantizationType, rows: int, columns: int, seed: int):
    """Random K-quant blocks with sane fp16 scales, in gguf's byte layout [rows, bytes]."""
    generator = np.random.default_rng(seed)
    block_size, block_bytes = gguf.GGML_QUANT_SIZES[kind]
    blocks = generator.integers(0, 256, (rows, columns // block_size, block_bytes), np.uint8)
    scales = generator.uniform(0.001, 0.01, (rows, columns // block_size, 2)).astype(np.float16)
    if kind == Q4_K:
        blocks[..., 0:4] = scales.view(np.uint8)  # d and dmin lead the block
    else:
        blocks[..., -2:] = scales[..., :1].view(np.uint8)  # Q6_K's d closes it
    return blocks.reshape(rows, -1)


def reference(blocks: np.ndarray, kind: gguf.GGMLQuantizationType) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(dequantize(blocks, kind), dtype=np.float32))


def assert_same_weights(tensors: dict[str, torch.Tensor], expected: torch.Tensor) -> None:
    """Equal but for rounding the scales and zeros to bf16 (8 bits: 2^-8 of each)."""
    scales, zeros = (tensors[k].float().repeat_interleave(32, dim=1) for k in ("scales", "zeros"))
    bound = (23 * scales.abs() + zeros.abs()) * 2**-8 + 1e-7  # |q - 8| <= 8, q <= 15
    error = (dequantize_int4(tensors, torch.float32) - expected).abs()
    assert (error <= bound).all(), f"off by {(error - bound).max()}"


def test_q4k_blocks_become_the_same_weights_in_int4() -> None:
    blocks = random_blocks(Q4_K, 32, 512, seed=0)
    tensors = q4k_to_int4(torch.from_numpy(blocks), 32, 512)
    assert tensors["qweight"].shape == (32, 256) and tensors["scales"].shape == (32, 16)
    assert_same_weights(tensors, reference(blocks, Q4_K))  # [32, 512]


def write_tiny_gguf(path: Path, tied: bool = False) -> dict[str, np.ndarray]:
    """A one-layer qwen2-shaped GGUF with Q4_K_M's mix of Q4_K and Q6_K tensors (with no
    output matrix when `tied`)."""
    shapes = {
        "token_embd.weight": (Q4_K, VOCAB, HIDDEN),
        "output.weight": (Q6_K, VOCAB, HIDDEN),
        "blk.0.attn_q.weight": (Q4_K, HIDDEN, HIDDEN),
        "blk.0.attn_k.weight": (Q4_K, KV_HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_v.weight": (Q6_K, KV_HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_output.weight": (Q4_K, HIDDEN, HIDDEN),
        "blk.0.ffn_gate.weight": (Q4_K, INTERMEDIATE, HIDDEN),
        "blk.0.ffn_up.weight": (Q4_K, INTERMEDIATE, HIDDEN),
        "blk.0.ffn_down.weight": (Q6_K, HIDDEN, INTERMEDIATE),
    }
    writer = gguf.GGUFWriter(str(path), "qwen2")
    blocks = {}
    for seed, (name, (kind, rows, columns)) in enumerate(shapes.items()):
        if tied and name == "output.weight":
            continue
        blocks[name] = random_blocks(kind, rows, columns, seed)
        writer.add_tensor(name, blocks[name], raw_dtype=kind)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return blocks


def tiny_decoder() -> DecoderForCausalLM:
    config = DecoderConfig.from_hf(
        {
            "model_type": "qwen2",
            "vocab_size": VOCAB,
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": 1,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
        }
    )
    return DecoderForCausalLM(config)


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "tiny.gguf"
    return path, write_tiny_gguf(path)


def test_a_gguf_yields_every_linear_the_engine_quantizes(tiny_gguf) -> None:
    path, _ = tiny_gguf
    weights = int4_weights(path, INT4)
    made_by_engine = quantize_model(tiny_decoder(), INT4, torch.float32, saved={})
    assert weights.keys() == made_by_engine.keys()
    for name, tensor in made_by_engine.items():
        assert weights[name].shape == tensor.shape and weights[name].dtype == tensor.dtype, name


def test_fused_projections_stack_their_shards_in_the_engines_order(tiny_gguf) -> None:
    path, blocks = tiny_gguf
    weights = int4_weights(path, INT4)

    def rows(name: str, start: int, stop: int | None) -> dict[str, torch.Tensor]:
        prefix = f"model.layers.0.{name}."
        return {k: weights[prefix + k][start:stop] for k in ("qweight", "scales", "zeros")}

    kv = KV_HEADS * HEAD_DIM  # [q rows, then k, then v] in the fused QKV projection
    assert_same_weights(
        rows("self_attn.qkv_proj", 0, HIDDEN), reference(blocks["blk.0.attn_q.weight"], Q4_K)
    )
    assert_same_weights(
        rows("self_attn.qkv_proj", HIDDEN, HIDDEN + kv),
        reference(blocks["blk.0.attn_k.weight"], Q4_K),
    )
    assert_same_weights(
        rows("mlp.gate_up_proj", INTERMEDIATE, 2 * INTERMEDIATE),
        reference(blocks["blk.0.ffn_up.weight"], Q4_K),
    )
    # A Q6_K shard is quantized again: within one 4-bit step of its 6-bit weights.
    v = reference(blocks["blk.0.attn_v.weight"], Q6_K).reshape(kv, -1, 32)
    step = (v.amax(-1) - v.amin(-1)) / 15
    requantized = dequantize_int4(rows("self_attn.qkv_proj", HIDDEN + kv, None), torch.float32)
    assert ((requantized.reshape(kv, -1, 32) - v).abs().amax(-1) <= step + 1e-6).all()
    head = {k: weights[f"lm_head.{k}"] for k in ("qweight", "scales")}
    output = reference(blocks["output.weight"], Q6_K)
    torch.testing.assert_close(
        dequantize_int8(head, torch.float32), output, atol=output.abs().max() / 127, rtol=0
    )


def test_a_tied_models_head_is_its_embedding(tmp_path: Path) -> None:
    blocks = write_tiny_gguf(tmp_path / "tied.gguf", tied=True)
    weights = int4_weights(tmp_path / "tied.gguf", INT4)
    head = {k: weights[f"lm_head.{k}"] for k in ("qweight", "scales")}
    embedding = reference(blocks["token_embd.weight"], Q4_K)
    torch.testing.assert_close(
        dequantize_int8(head, torch.float32), embedding, atol=embedding.abs().max() / 127, rtol=0
    )


def test_other_group_sizes_are_a_callers_bug(tiny_gguf) -> None:
    with pytest.raises(RuntimeError, match="groups of 32"):
        int4_weights(tiny_gguf[0], QuantizationConfig("int4", group_size=64))
