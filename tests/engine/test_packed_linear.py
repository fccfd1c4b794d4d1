"""bf16 linears laid out for a faster kernel change speed, not results: oneDNN's packing
bit for bit, the compiled kernel's tiles within one bf16 rounding step and the same in
any batch, and the engine's greedy tokens unchanged."""

import pytest
import torch
from torch import nn

import engine.models.loader as loader
from engine import LLM, SamplingParams
from engine.models.packed_linear import PackedLinear, TiledLinear, can_pack
from kernels import cpu_linear

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


needs_the_kernel = pytest.mark.skipif(
    cpu_linear.linear_kernel() is None, reason="no AVX512-BF16 on this CPU (or no gcc)"
)


@needs_the_kernel
@pytest.mark.parametrize(("in_features", "out_features"), [(896, 1152), (96, 1000), (4864, 64)])
@pytest.mark.parametrize("bias", [True, False])
def test_a_tiled_linear_is_within_one_rounding_step_of_fp32(
    in_features: int, out_features: int, bias: bool
) -> None:
    torch.manual_seed(in_features + out_features)
    linear = nn.Linear(in_features, out_features, bias=bias).to(torch.bfloat16)
    tiled = TiledLinear(linear.weight, linear.bias, cpu_linear.linear_kernel())
    x = torch.randn(3, 11, in_features, dtype=torch.bfloat16)  # 33 rows: a pass of 8 and more
    exact = x.float() @ linear.weight.float().T
    if bias:
        exact += linear.bias.float()
    out = tiled(x)
    assert out.shape == (3, 11, out_features) and out.dtype == torch.bfloat16
    # fp32 sums in another order, then one rounding to bf16 (8 bits: 2**-8 of the value)
    assert ((out.float() - exact).abs() <= exact.abs() * 2**-7 + 1e-3).all()
    plain = linear(x)
    assert (out != plain).float().mean() < 1e-3  # oneDNN's own sums agree nearly everywhere


@needs_the_kernel
def test_a_row_of_a_tiled_linear_gets_the_same_bits_alone_or_in_any_batch() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(896, 1152).to(torch.bfloat16)
    tiled = TiledLinear(linear.weight, linear.bias, cpu_linear.linear_kernel())
    batch = torch.randn(37, 896, dtype=torch.bfloat16)
    together = tiled(batch)
    for index in (0, 7, 8, 36):
        assert torch.equal(tiled(batch[index : index + 1])[0], together[index])


def test_the_engine_packs_every_plain_bf16_linear_and_its_tokens_differ_only_at_near_ties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With oneDNN's packing the tokens are the plain engine's exactly; with the kernel's
    tiles, the first token that differs (if any) was a near tie in the plain engine."""
    prompts = ["The capital of France is", "def fibonacci(n):\n    ", "用一句话介绍长城："]
    params = SamplingParams(temperature=0, max_tokens=16, logprobs=5)
    options = {"dtype": "bfloat16", "kv_cache_memory": 32 << 20}
    packed = LLM("smollm2:135m-instruct", **options)
    model = packed.engine.runner.model
    exact = cpu_linear.linear_kernel() is None
    packed_type = PackedLinear if exact else TiledLinear
    linears = [m for m in model.modules() if isinstance(m, nn.Linear | PackedLinear | TiledLinear)]
    assert linears and all(isinstance(m, packed_type) for m in linears)
    assert isinstance(model.lm_head, packed_type)  # the tied head gets a packed copy
    ours = packed.generate(prompts, params)
    del packed
    monkeypatch.setattr(loader, "can_pack", lambda *_: False)
    plain = LLM("smollm2:135m-instruct", **options)
    assert type(plain.engine.runner.model.model.layers[0].mlp.down_proj) is nn.Linear
    for mine, theirs in zip(ours, plain.generate(prompts, params), strict=True):
        if exact or mine.token_ids == theirs.token_ids:
            assert mine.token_ids == theirs.token_ids
            continue
        pairs = zip(mine.token_ids, theirs.token_ids, strict=False)
        first = next(i for i, (a, b) in enumerate(pairs) if a != b)
        top = theirs.logprobs[first]
        assert mine.token_ids[first] in top, f"{mine.prompt!r}: not even a runner-up"
        # NOTE: bf16 logits of 16 to 32 step by 0.125: a tie is within two such steps.
        assert top[theirs.token_ids[first]] - top[mine.token_ids[first]] <= 0.25, mine.prompt
