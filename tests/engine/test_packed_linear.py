"""bf16 linears packed for oneDNN change speed, never results."""

import pytest
import torch
from torch import nn

import engine.models.loader as loader
from engine import LLM, SamplingParams
from engine.models.packed_linear import PackedLinear, can_pack

pytestmark = pytest.mark.skipif(
    not can_pack(torch.bfloat16, torch.device("cpu")), reason="no oneDNN bf16 on this CPU"
)


@pytest.mark.parametrize("rows", [1, 3, 8, 300])
@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_linear_equals_the_plain_one_bit_for_bit(rows: int, bias: bool) -> None:
    torch.manual_seed(rows)
    linear = nn.Linear(896, 1152, bias=bias).to(torch.bfloat16)
    packed = PackedLinear(linear.weight, linear.bias)
    x = torch.randn(2, rows, 896, dtype=torch.bfloat16)  # any leading dims
    assert torch.equal(packed(x), linear(x))


def test_the_engine_packs_every_plain_bf16_linear_and_generates_the_same_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prompts = ["The capital of France is", "def fibonacci(n):\n    ", "用一句话介绍长城："]
    params = SamplingParams(temperature=0, max_tokens=16)
    options = {"dtype": "bfloat16", "kv_cache_memory": 32 << 20}
    packed = LLM("smollm2:135m-instruct", **options)
    model = packed.engine.runner.model
    linears = [m for m in model.modules() if isinstance(m, nn.Linear | PackedLinear)]
    assert linears and all(isinstance(m, PackedLinear) for m in linears)
    assert isinstance(model.lm_head, PackedLinear)  # the tied head gets a packed copy
    expected = [o.token_ids for o in packed.generate(prompts, params)]
    del packed
    monkeypatch.setattr(loader, "can_pack", lambda *_: False)
    plain = LLM("smollm2:135m-instruct", **options)
    assert type(plain.engine.runner.model.model.layers[0].mlp.down_proj) is nn.Linear
    assert [o.token_ids for o in plain.generate(prompts, params)] == expected
