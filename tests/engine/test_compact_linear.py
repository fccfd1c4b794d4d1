"""fp32 linears over bf16 weights (AVX2 and FMA) change speed, not results: each output
within a few fp32 rounding steps of `F.linear` on the same weight, the same bits for a
row in any batch, MKL for a prefill's rows, and the engine's greedy tokens unchanged."""

import pytest
import torch
from torch import nn

import engine.models.loader as loader
from engine import LLM, SamplingParams
from engine.models.decoder import DecoderForCausalLM
from engine.models.packed_linear import WIDEN_ROWS, CompactLinear, can_compact, compact_linears
from kernels import cpu_linear

pytestmark = pytest.mark.skipif(
    not can_compact(torch.float32, torch.device("cpu")), reason="no AVX2 with FMA (or no gcc)"
)


def bf16_valued_linear(in_features: int, out_features: int, bias: bool) -> nn.Linear:
    linear = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(linear.weight.to(torch.bfloat16).float())
    return linear


@pytest.mark.parametrize(("in_features", "out_features"), [(896, 1152), (96, 1000), (4864, 60)])
@pytest.mark.parametrize("rows", [1, 3, 8, 33, WIDEN_ROWS])
@pytest.mark.parametrize("bias", [True, False])
def test_a_compact_linear_computes_what_the_fp32_one_does(
    in_features: int, out_features: int, rows: int, bias: bool
) -> None:
    torch.manual_seed(in_features + rows)
    linear = bf16_valued_linear(in_features, out_features, bias)
    compact = CompactLinear(linear.weight, linear.bias, cpu_linear.compact_kernel())
    assert compact.tiled.dtype == torch.bfloat16  # half the bytes of the fp32 weight
    x = torch.randn(1, rows, in_features)  # any leading dims
    with torch.no_grad():
        out, plain = compact(x), linear(x)
    assert out.shape == plain.shape and out.dtype == torch.float32
    # The same products, summed in another order: fp32 rounding only.
    scale = (x.abs() @ linear.weight.detach().abs().T).amax()
    torch.testing.assert_close(out, plain, rtol=0, atol=float(scale) * 2e-6)


def test_a_row_of_a_compact_linear_gets_the_same_bits_alone_or_in_any_batch() -> None:
    torch.manual_seed(0)
    linear = bf16_valued_linear(896, 1152, bias=True)
    compact = CompactLinear(linear.weight, linear.bias, cpu_linear.compact_kernel())
    batch = torch.randn(37, 896)
    together = compact(batch)
    for index in (0, 1, 2, 36):
        assert torch.equal(compact(batch[index : index + 1])[0], together[index])


def test_only_linears_holding_bf16_values_are_made_compact() -> None:
    llm = LLM("smollm2:135m-instruct", dtype="float32", kv_cache_memory=32 << 20)
    model: DecoderForCausalLM = llm.engine.runner.model
    assert isinstance(model.lm_head, CompactLinear)  # the tied head: a compact copy
    assert not any(type(m) is nn.Linear for m in model.modules())
    # A linear with a value bf16 cannot hold (a GGUF's dequantized weight) is left alone.
    odd = nn.Linear(64, 64)
    with torch.no_grad():
        odd.weight.copy_(odd.weight.to(torch.bfloat16).float())
        odd.weight[0, 0] = 1 + 2**-12
    holder = nn.Module()
    holder.lm_head, holder.odd = None, odd
    holder.untie_lm_head = lambda: None
    assert compact_linears(holder) == 0 and holder.odd is odd


def test_the_engine_tokens_equal_the_plain_fp32_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = ["The capital of France is", "def fibonacci(n):\n    ", "用一句话介绍长城："]
    params = SamplingParams(temperature=0, max_tokens=16)
    options = {"dtype": "float32", "kv_cache_memory": 32 << 20}
    compact = LLM("smollm2:135m-instruct", **options).generate(prompts, params)
    monkeypatch.setattr(loader, "can_compact", lambda *_: False)
    plain = LLM("smollm2:135m-instruct", **options)
    assert type(plain.engine.runner.model.model.layers[0].mlp.down_proj) is nn.Linear
    expected = plain.generate(prompts, params)
    assert [o.token_ids for o in compact] == [o.token_ids for o in expected]
