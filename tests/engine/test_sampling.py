"""Sampling, stop conditions, streaming text and bad input, on the real small model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import LLM, SamplingParams
from engine.errors import PromptTooLongError
from engine.sampler import penalized, sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM("smollm2:135m-instruct", kv_cache_memory=128 << 20, max_model_len=512)


# ---- the sampler on its own --------------------------------------------------------


def test_greedy_rows_take_the_argmax_and_sampled_rows_respect_top_k() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.9, -1.0]] * 3)
    params = [
        SamplingParams(temperature=0),
        SamplingParams(temperature=5.0, top_k=2),
        SamplingParams(temperature=1.0, top_p=0.01),
    ]
    seen = set()
    for seed in range(50):
        generators = [
            None,
            torch.Generator().manual_seed(seed),
            torch.Generator().manual_seed(seed),
        ]
        greedy, top_k, tiny_p = sample(logits, params, generators)
        assert greedy == 1
        assert tiny_p == 1  # top_p below the best token's mass keeps only that token
        seen.add(top_k)
    assert seen == {1, 2}  # both of the top two, never the others


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    params = [SamplingParams(temperature=1.0, top_p=0.75)]
    drawn = {sample(logits, params, [torch.Generator().manual_seed(s)])[0] for s in range(200)}
    assert drawn == {0, 1}  # 0.5 + 0.3 reaches 0.75; 0.15 and 0.05 are cut


def test_sampling_params_reject_bad_values() -> None:
    for bad in (
        {"temperature": -1},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"top_p": 0},
        {"top_k": -2},
        {"max_tokens": 0},
        {"stop": [""]},
        {"logprobs": -1},
        {"logprobs": 21},
        {"presence_penalty": 2.5},
        {"frequency_penalty": float("nan")},
        {"repetition_penalty": 0},
        {"repetition_penalty": 5e-324},  # fp32 logits divided by it: infinities
    ):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    assert SamplingParams(stop="x").stop == ("x",)


def test_extreme_but_valid_values_still_sample_a_token() -> None:
    """One request's extreme values must not fail the step for the whole batch."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 4))
    params = [
        SamplingParams(temperature=1.0, top_k=10**20),  # past int64
        SamplingParams(temperature=1.0, top_p=5e-324),  # rounds to 0 in float32
        SamplingParams(temperature=5e-324),  # rounds to 0: greedy
        SamplingParams(temperature=1e300),  # rounds to inf: uniform
    ]
    tokens = sample(logits, params, [torch.Generator().manual_seed(0)] * 4)
    assert all(0 <= token < 4 for token in tokens)
    assert tokens[1] == 0 and tokens[2] == 0  # the most likely token survives any top_p


# ---- through the engine --------------------------------------------------------------


def test_same_seed_same_text_whatever_the_batch(llm: LLM) -> None:
    seeded = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=16, seed=42)
    alone = llm.generate(["Write a haiku about rivers."], seeded)[0]
    crowd = ["Tell me a joke.", "Write a haiku about rivers.", "Count to five."]
    other = SamplingParams(temperature=1.0, max_tokens=16)
    batched = llm.generate(crowd, [other, seeded, other])[1]
    assert batched.token_ids == alone.token_ids
    different = llm.generate(
        ["Write a haiku about rivers."],
        SamplingParams(temperature=1.0, top_p=0.9, max_tokens=16, seed=7),
    )[0]
    assert different.token_ids != alone.token_ids


def test_max_tokens_ends_with_length(llm: LLM) -> None:
    out = llm.generate(["Count from one to fifty:"], SamplingParams(temperature=0, max_tokens=5))[0]
    assert len(out.token_ids) == 5 and out.finish_reason == "length"


def test_eos_ends_with_stop(llm: LLM) -> None:
    [out] = llm.chat(
        [{"role": "user", "content": "Say hi."}], SamplingParams(temperature=0, max_tokens=64)
    )
    assert out.finish_reason == "stop"
    assert out.token_ids[-1] in llm.engine.eos_token_ids
    assert "<|im_end|>" not in out.text


def test_stop_string_cuts_the_text_before_it(llm: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=64)
    full = llm.generate(["The days of the week are Monday,"], params)[0].text
    assert "Wednesday" in full
    stopped = llm.generate(
        ["The days of the week are Monday,"],
        SamplingParams(temperature=0, max_tokens=64, stop=["Wed"]),
    )[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full[: full.index("Wed")]


def test_stop_token_id_ends_generation(llm: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=32)
    tokens = llm.generate(["The days of the week are Monday,"], params)[0].token_ids
    stop_id = tokens[3]
    out = llm.generate(
        ["The days of the week are Monday,"],
        SamplingParams(temperature=0, max_tokens=32, stop_token_ids=[stop_id]),
    )[0]
    assert out.token_ids == tokens[: tokens.index(stop_id) + 1]  # its first occurrence
    assert out.finish_reason == "stop"


def test_streamed_pieces_add_up_to_the_text_including_multibyte(llm: LLM) -> None:
    prompt = "Repeat exactly: 你好，世界！ café naïve 🙂"
    params = SamplingParams(temperature=0, max_tokens=40)
    pieces = list(llm.stream(prompt, params))
    final = llm.generate([prompt], params)[0]
    assert "".join(pieces) == final.text
    assert "\ufffd" not in final.text
    assert final.text == llm.tokenizer.decode(final.token_ids, skip_special_tokens=True)


def test_closing_a_stream_early_frees_its_blocks(llm: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=200, ignore_eos=True)  # never ends by itself
    stream = llm.stream("Tell me a long story.", params)
    next(stream)
    stream.close()
    manager = llm.engine.block_manager
    assert not llm.engine.has_unfinished_requests()
    assert manager.num_free_blocks == manager.num_blocks


def test_token_id_prompts_and_input_order(llm: LLM) -> None:
    ids = llm.tokenizer("The capital of France is").input_ids
    params = SamplingParams(temperature=0, max_tokens=4)
    by_ids, by_text = llm.generate([ids, "The capital of France is"], params)
    assert by_ids.token_ids == by_text.token_ids
    assert by_ids.prompt is None and by_text.prompt == "The capital of France is"


def test_prompt_longer_than_the_model_holds_is_refused(llm: LLM) -> None:
    with pytest.raises(PromptTooLongError, match="at most 511 prompt tokens"):
        llm.generate([[1] * 600])
    assert not llm.engine.has_unfinished_requests()


def test_empty_prompt_and_bad_token_ids_are_refused(llm: LLM) -> None:
    with pytest.raises(ValueError, match="empty"):
        llm.generate([[]])
    with pytest.raises(ValueError, match="token ids"):
        llm.generate([[10**9]])


def test_a_bad_prompt_in_a_batch_leaves_nothing_queued(llm: LLM) -> None:
    with pytest.raises(ValueError, match="empty"):
        llm.generate(["fine", ""])
    assert not llm.engine.has_unfinished_requests()


def test_penalties_are_vllms() -> None:
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5], [2.0, -1.0, 3.0, 0.5]])
    params = [
        SamplingParams(presence_penalty=0.5, frequency_penalty=0.25, repetition_penalty=2.0),
        SamplingParams(),
    ]
    # Row 0: prompt [1], output [2, 2, 3]. Repetition acts on tokens 1, 2, 3 (prompt and
    # output); presence and frequency on 2 (twice) and 3 (once) only.
    got = penalized(logits, params, [[1], [1]], [[2, 2, 3], [2]])
    expected = torch.tensor([2.0, -2.0, 1.5 - 0.5 - 0.5, 0.25 - 0.5 - 0.25])
    torch.testing.assert_close(got[0], expected)
    torch.testing.assert_close(got[1], logits[1])  # no penalty asked: untouched
    assert logits[0, 2] == 3.0  # the input (its logprobs) is left as it was


def test_a_repetition_penalty_decodes_as_transformers_does() -> None:
    """Greedy with vLLM's repetition penalty equals Hugging Face's, whose processor has
    the same meaning (prompt and output tokens, divide positive, multiply negative)."""
    llm = LLM("smollm2:135m-instruct", dtype="float32", kv_cache_memory=32 << 20)
    params = SamplingParams(temperature=0, max_tokens=16, repetition_penalty=1.5)
    output = llm.generate(["a a a a a a a a a a"], params)[0]
    plain = llm.generate(["a a a a a a a a a a"], SamplingParams(temperature=0, max_tokens=16))
    assert output.token_ids != plain[0].token_ids  # the penalty changed the answer
    model = AutoModelForCausalLM.from_pretrained(llm.engine.model_path, dtype=torch.float32)
    ids = torch.tensor([output.prompt_token_ids])
    with torch.no_grad():
        expected = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=16,
            do_sample=False,
            repetition_penalty=1.5,
        )
    assert output.token_ids == expected[0, ids.shape[1] :].tolist()


def test_logprobs_are_the_models_own_for_each_generated_token() -> None:
    llm = LLM("smollm2:135m-instruct", dtype="float32", kv_cache_memory=32 << 20)
    params = SamplingParams(temperature=0, max_tokens=3, logprobs=5)
    output = llm.generate(["The capital of France is"], params)[0]
    assert output.logprobs is not None and len(output.logprobs) == len(output.token_ids) == 3
    # Against the logits of a plain forward pass over the prompt plus what was generated.
    ids = torch.tensor([output.prompt_token_ids + output.token_ids])
    model = AutoModelForCausalLM.from_pretrained(llm.engine.model_path, dtype=torch.float32)
    with torch.no_grad():
        logits = model(ids).logits[0, len(output.prompt_token_ids) - 1 : -1]  # [3, vocab]
    expected = logits.log_softmax(-1)
    for position, (token, returned) in enumerate(
        zip(output.token_ids, output.logprobs, strict=True)
    ):
        top = expected[position].topk(5)
        assert list(returned)[:5] == top.indices.tolist()  # most likely first
        assert token == top.indices[0].item() and token in returned  # greedy: the best one
        got = torch.tensor([returned[i] for i in top.indices.tolist()])
        torch.testing.assert_close(got, top.values, atol=1e-3, rtol=1e-3)
    # The same in vLLM's shape, as scripts written for vLLM read it.
    (completion,) = output.outputs
    assert (completion.index, completion.text, completion.token_ids) == (
        0,
        output.text,
        output.token_ids,
    )
    assert completion.finish_reason == "length"
    assert completion.logprobs is not None
    steps = zip(output.token_ids, completion.logprobs, output.logprobs, strict=True)
    chosen = [
        ours[token].logprob for token, ours, floats in steps if ours[token].logprob == floats[token]
    ]
    assert len(chosen) == len(output.token_ids)
    assert completion.cumulative_logprob == pytest.approx(sum(chosen))


def test_the_chosen_token_has_a_logprob_even_outside_the_top(llm: LLM) -> None:
    params = SamplingParams(temperature=5.0, seed=3, max_tokens=8, logprobs=1)
    output = llm.generate(["Tell me a story."], params)[0]
    assert output.logprobs is not None
    for token, returned in zip(output.token_ids, output.logprobs, strict=True):
        assert token in returned and 1 <= len(returned) <= 2
        assert all(value <= 0 for value in returned.values())
    plain = llm.generate(["Hi"], SamplingParams(max_tokens=2))[0]
    assert plain.logprobs is None and plain.outputs[0].logprobs is None
    assert plain.outputs[0].cumulative_logprob is None and plain.outputs[0].text == plain.text
