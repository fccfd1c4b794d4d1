"""Weight-only int8/int4: the math, the CPU kernels against the reference, and the store."""

from pathlib import Path

import pytest
import torch
from torch import nn

from engine import LLM, SamplingParams
from engine.config import EngineConfig
from engine.errors import EngineConfigError
from engine.library import DEFAULT_MODEL, default_quantization
from engine.library.store import ModelStore
from engine.models import loader, quantization
from engine.models.packed_linear import PackedLinear, TiledLinear
from engine.models.quantization import (
    QuantizationConfig,
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    fbgemm_available,
    quantize_int4,
    quantize_int8,
    quantize_linear,
)
from tests.tiny_model import save_tiny_llama

INT4 = QuantizationConfig("int4", group_size=32)
INT8 = QuantizationConfig("int8")


def test_int8_round_trip_is_within_half_a_step() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 96)
    tensors = quantize_int8(weight)
    step = tensors["scales"][:, None]
    error = (dequantize_int8(tensors, torch.float32) - weight).abs()
    assert tensors["qweight"].dtype == torch.int8
    assert (error <= step / 2 + 1e-6).all()
    # the largest weight of each row is exactly representable: it sets the scale
    assert torch.equal(
        tensors["qweight"].abs().amax(dim=1), torch.full((48,), 127, dtype=torch.int8)
    )


def test_int4_recovers_weights_already_on_a_4bit_grid() -> None:
    """A GGUF Q4_K sub-block is scale * q - min, q in 0..15: group 32 should give it back."""
    torch.manual_seed(0)
    q = torch.randint(0, 16, (32, 128))
    q[:, ::32] = 0  # every group spans the whole grid, as real 32-weight blocks do
    q[:, 1::32] = 15
    scale = torch.rand(32, 4, 1) * 0.01 + 0.001
    low = -torch.rand(32, 4, 1) * 0.05
    weight = (q.reshape(32, 4, 32) * scale + low).reshape(32, 128)
    tensors = quantize_int4(weight, group_size=32)
    assert tensors["qweight"].shape == (32, 64)
    assert torch.equal(quantization.unpack_int4(tensors["qweight"]), q.to(torch.uint8))
    restored = dequantize_int4(tensors, torch.float32)
    # only the bf16 rounding of the scale and zero remains (8 bits: 2**-8 of their size)
    assert (restored - weight).abs().max() < 2**-8 * weight.abs().max()


def test_int4_error_is_within_a_step_on_random_weights() -> None:
    torch.manual_seed(1)
    weight = torch.randn(64, 256)
    tensors = quantize_int4(weight, group_size=64)
    restored = dequantize_int4(tensors, torch.float32)
    step = tensors["scales"].float().repeat_interleave(64, dim=1)
    assert ((restored - weight).abs() <= step * 0.6 + 1e-3).all()


@pytest.mark.parametrize("own_kernel", [True, False], ids=["own-kernel", "torch-kernels"])
@pytest.mark.parametrize("config", [INT8, INT4], ids=["int8", "int4"])
@pytest.mark.parametrize("rows", [1, 3, 4, 8, 40])  # the fused kernels and the dequantized path
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])  # fp32: kernels run in bf16
def test_quantized_linear_matches_its_dequantized_reference(
    config: QuantizationConfig,
    rows: int,
    dtype: torch.dtype,
    own_kernel: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not own_kernel:
        monkeypatch.setattr(quantization.cpu_quantized, "quantized_kernel", lambda: None)
    torch.manual_seed(rows)
    linear = nn.Linear(128, 96, bias=True).to(dtype)
    quantized = quantize_linear(linear, config, dtype)
    x = torch.randn(rows, 128, dtype=dtype)
    expected = x.float() @ quantized.dequantized_weight().float().t() + linear.bias.float()
    out = quantized(x)
    assert out.shape == (rows, 96) and out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=2e-2)
    # and it is close to the full-precision linear it replaced (16 levels vs 255)
    full = linear(x).float()
    relative_error = (out.float() - full).abs().mean() / full.abs().mean()
    assert relative_error < (0.1 if config.method == "int4" else 0.01)


@pytest.mark.parametrize("config", [INT8, INT4], ids=["int8", "int4"])
def test_weights_read_back_off_a_64_byte_boundary_serve_every_row_count(
    config: QuantizationConfig,
) -> None:
    """As a safetensors file hands them back: torch's int8 kernel crashed on 4 rows."""
    torch.manual_seed(0)
    linear = nn.Linear(896, 512, bias=False)
    tensors = quantize_linear(linear, config, torch.float32).tensors()
    misaligned = {}
    for name, tensor in tensors.items():
        flat = torch.empty(tensor.numel() * tensor.element_size() + 64, dtype=torch.uint8)
        start = (8 - flat.data_ptr()) % 64
        view = flat[start : start + tensor.numel() * tensor.element_size()].view(tensor.dtype)
        misaligned[name] = view.view(tensor.shape).copy_(tensor)
        assert misaligned[name].data_ptr() % 64 == 8
    quantized = QuantizedLinear(config, misaligned, None, torch.float32)
    for rows in range(1, 9):
        x = torch.randn(rows, 896)
        expected = x @ quantized.dequantized_weight().t()
        torch.testing.assert_close(quantized(x), expected, atol=5e-2, rtol=2e-2)


@pytest.fixture
def without_own_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantized linears on torch's kernels and the dequantizing path, as without AVX2."""
    monkeypatch.setattr(quantization.cpu_quantized, "quantized_kernel", lambda: None)


@pytest.mark.parametrize("config", [INT8, INT4], ids=["int8", "int4"])
def test_prefill_linears_sharing_the_scratch_buffer_keep_their_own_outputs(
    config: QuantizationConfig, without_own_kernel: None
) -> None:
    """Every prefill linear dequantizes into one buffer: an output must not alias it."""
    torch.manual_seed(1)
    small, large = nn.Linear(64, 48, bias=False), nn.Linear(64, 160, bias=False)
    small_q, large_q = (quantize_linear(lin, config, torch.float32) for lin in (small, large))
    x = torch.randn(40, 64)  # past KERNEL_MAX_ROWS: the dequantizing path
    first = small_q(x)
    expected_first = x @ small_q.dequantized_weight().t()
    second = large_q(x)  # grows the buffer and overwrites what `small` dequantized
    again = small_q(x)
    torch.testing.assert_close(first, expected_first)
    torch.testing.assert_close(second, x @ large_q.dequantized_weight().t())
    assert torch.equal(again, first)


def test_quantized_linear_keeps_only_the_portable_tensors_for_saving() -> None:
    linear = nn.Linear(64, 32, bias=False).to(torch.bfloat16)
    quantized = quantize_linear(linear, INT4, torch.bfloat16)
    assert set(quantized.tensors()) == {"qweight", "scales", "zeros"}
    assert set(quantized.state_dict()) == {"qweight", "scales", "zeros"}
    assert not any(isinstance(p, nn.Parameter) for p in quantized.parameters())
    assert isinstance(quantized, QuantizedLinear)


HEAD = QuantizationConfig("int8", int8_activations=True)


@pytest.mark.skipif(not fbgemm_available(), reason="fbgemm runs int8 rows only with VNNI")
def test_int8_rows_are_close_to_the_weight_only_product(without_own_kernel: None) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(256, 1024, bias=False)
    head = quantize_linear(linear, HEAD, torch.bfloat16)
    rows = torch.randn(3, 256, dtype=torch.bfloat16)
    exact = rows.float() @ head.dequantized_weight().float().t()
    out = head(rows).float()
    # int8 rows: an error of about 1/127 of a row's largest value per product term
    assert (out - exact).abs().max() < 0.02 * exact.abs().max()
    assert torch.equal(out.argmax(dim=1), exact.argmax(dim=1))


@pytest.mark.skipif(not fbgemm_available(), reason="fbgemm runs int8 rows only with VNNI")
def test_a_rows_int8_logits_do_not_depend_on_its_batch(without_own_kernel: None) -> None:
    torch.manual_seed(0)
    head = quantize_linear(nn.Linear(256, 1024, bias=False), HEAD, torch.bfloat16)
    row = torch.randn(1, 256, dtype=torch.bfloat16)
    loud = 50 * torch.randn(4, 256, dtype=torch.bfloat16)  # a batch-mate with a far wider range
    skewed = torch.randn(1, 256, dtype=torch.bfloat16).abs()  # all positive: a different min
    alone = head(row)
    assert torch.equal(head(torch.cat([loud, row]))[-1:], alone)
    assert torch.equal(head(torch.cat([row, skewed]))[:1], alone)


def test_config_refuses_unknown_methods_and_bad_group_sizes() -> None:
    with pytest.raises(EngineConfigError, match="quantization must be one of none, int8, int4"):
        EngineConfig(quantization="int3")
    with pytest.raises(EngineConfigError, match="multiple of 16"):
        EngineConfig(quantization="int4", quantization_group_size=24)
    with pytest.raises(ValueError, match="multiple of 16"):
        QuantizationConfig("int4", group_size=0)


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return save_tiny_llama(tmp_path / "tiny")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private PagedRAG home: the store where quantized weights of a user's folder go."""
    return tmp_path / "home"


def greedy(llm: LLM, prompt: list[int]) -> list[int]:
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    return llm.generate([prompt], params)[0].token_ids


def test_quantized_engine_agrees_with_full_precision_and_keeps_its_weights(
    tiny_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = [1, 422, 3081, 314, 4193, 28, 9226, 30]
    options = {"dtype": "bfloat16", "kv_cache_memory": 8 << 20, "home": home}
    reference = greedy(LLM(str(tiny_dir), **options), prompt)
    llm = LLM(str(tiny_dir), quantization="int8", **options)
    assert greedy(llm, prompt)[:6] == reference[:6]
    layer = llm.engine.runner.model.model.layers[0]
    assert isinstance(layer.mlp.down_proj, QuantizedLinear)
    assert isinstance(llm.engine.runner.model.lm_head, QuantizedLinear)
    saved = ModelStore.default(home).quantized_weights_path(tiny_dir, "int8")
    assert saved.is_file() and tiny_dir not in saved.parents  # the user's folder is untouched

    # The next start loads what was saved and quantizes nothing.
    def refuse(*args: object) -> None:
        raise AssertionError("quantized again instead of loading the saved weights")

    monkeypatch.setattr(quantization, "quantize_linear", refuse)
    again = LLM(str(tiny_dir), quantization="int8", **options)
    assert greedy(again, prompt) == greedy(llm, prompt)


def test_each_model_has_its_own_default_quantization(tiny_dir: Path, home: Path) -> None:
    """As Ollama's tags come quantized: the 1.5B model is served int4 unless told."""
    assert default_quantization("qwen2.5-coder:1.5b-instruct") == "int4"
    assert default_quantization(None) == default_quantization(DEFAULT_MODEL) == "int4"
    assert default_quantization("qwen2.5-coder:0.5b-instruct") == "none"
    assert default_quantization(str(tiny_dir)) == "none"  # a folder: as it is
    options = {"kv_cache_memory": 8 << 20, "home": home}
    assert LLM(str(tiny_dir), **options).engine.quantization == "none"
    chosen = LLM(str(tiny_dir), quantization="int8", **options).engine
    assert chosen.quantization == "int8"
    assert isinstance(chosen.runner.model.lm_head, QuantizedLinear)


def test_changed_weights_are_quantized_again(tiny_dir: Path, home: Path) -> None:
    options = {"quantization": "int4", "kv_cache_memory": 8 << 20, "home": home}
    LLM(str(tiny_dir), **options)
    saved = ModelStore.default(home).quantized_weights_path(tiny_dir, "int4-g32")
    first = saved.stat().st_mtime_ns
    save_tiny_llama(tiny_dir, tokenizer=False, initializer_range=0.1)  # new weights, same path
    LLM(str(tiny_dir), **options)
    assert saved.stat().st_mtime_ns != first


def test_a_damaged_saved_file_is_rebuilt(tiny_dir: Path, home: Path) -> None:
    options = {"quantization": "int8", "kv_cache_memory": 8 << 20, "home": home}
    LLM(str(tiny_dir), **options)
    saved = ModelStore.default(home).quantized_weights_path(tiny_dir, "int8")
    saved.write_bytes(saved.read_bytes()[:100])  # a crash mid-copy, a full disk
    llm = LLM(str(tiny_dir), **options)
    assert len(greedy(llm, [1, 2, 3])) == 12
    assert saved.stat().st_size > 1000


def test_linears_that_do_not_fit_the_group_size_stay_in_full_precision(
    tiny_dir: Path, home: Path
) -> None:
    # hidden size 64: a group of 128 columns does not divide it, 64 does the MLP's 128
    options = {"quantization_group_size": 128, "kv_cache_memory": 8 << 20, "home": home}
    llm = LLM(str(tiny_dir), quantization="int4", **options)
    layer = llm.engine.runner.model.model.layers[0]
    full_precision = nn.Linear | PackedLinear | TiledLinear
    assert isinstance(layer.self_attn.qkv_proj, full_precision)
    assert isinstance(layer.mlp.down_proj, QuantizedLinear)


def test_a_tied_head_is_quantized_to_int8_and_the_embedding_kept(
    tmp_path: Path, home: Path
) -> None:
    model_dir = save_tiny_llama(tmp_path / "tied", tie_word_embeddings=True)
    prompt = [1, 422, 3081, 314, 4193, 28, 9226, 30]
    options = {"dtype": "bfloat16", "kv_cache_memory": 8 << 20, "home": home}
    model = LLM(str(model_dir), quantization="int4", **options).engine.runner.model
    assert isinstance(model.lm_head, QuantizedLinear)
    # int4 layers, an int8 head (with int8 decode rows where fbgemm runs them)
    assert model.lm_head.config == QuantizationConfig("int8", int8_activations=fbgemm_available())
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    reference = greedy(LLM(str(model_dir), **options), prompt)
    assert greedy(LLM(str(model_dir), quantization="int8", **options), prompt)[:4] == reference[:4]


def test_an_fp32_load_keeps_no_full_precision_copy_of_what_it_quantizes(
    tiny_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 1.5B model peaked at 11 GB loading in fp32 before it was quantized (now 4.6)."""
    staged: dict[str, torch.dtype | str] = {}
    stage = loader._stage_linears

    def recording(model, config, saved) -> None:
        stage(model, config, saved)
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                weight = module.weight
                staged[name] = "meta" if weight.is_meta else weight.dtype

    monkeypatch.setattr(loader, "_stage_linears", recording)
    options = {"dtype": "float32", "kv_cache_memory": 8 << 20, "home": home}
    prompt = [1, 422, 3081, 314, 4193, 28, 9226, 30]
    first = greedy(LLM(str(tiny_dir), quantization="int4", **options), prompt)
    # int4 linears load in bf16 to be quantized; the int8 head keeps fp32
    assert staged["model.layers.0.mlp.down_proj"] == torch.bfloat16
    assert staged["lm_head"] == torch.float32
    staged.clear()
    again = greedy(LLM(str(tiny_dir), quantization="int4", **options), prompt)
    # from the saved file: no linear that it holds is allocated at all
    assert set(staged.values()) == {"meta"} and len(staged) >= 5
    assert again == first
