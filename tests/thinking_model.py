"""Factory: a tiny reasoning model that always thinks the same thought, then answers.

No reasoning model small enough for the tests is packaged, so this one is built: a tiny
Llama whose layers add nothing (zero output projections) and whose LM head maps each
token of a fixed chain to the next one, so greedy decoding after the chat template's
generation prompt writes `<think>Passage [1] says</think>` then `Paris`. The tokenizer
is SmolLM2's with `<think>` and `</think>` added as Qwen3 has them, and the chat template
is ChatML with Qwen3's `enable_thinking` switch (false writes an empty thought, after
which the chain answers at once).
"""

import itertools
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from engine.library import resolve_model
from tests.tiny_model import SMOLLM2, tiny_llama_config

THOUGHT = "Passage [1] says"  # a citation marker the answer must never take over
ANSWER = "Paris"
TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{{ message.content }}<|im_end|>\n{% endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think></think>{%- endif %}{%- endif %}"
)


def save_thinking_model(directory: Path) -> Path:
    """Save the model and its tokenizer into `directory`; returns it."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(SMOLLM2, progress=False))
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(directory)
    # The chain: the generation prompt's last token, the thought, the answer, the end.
    chain = [
        tokenizer("assistant\n", add_special_tokens=False).input_ids[-1],
        *tokenizer.convert_tokens_to_ids(["<think>"]),
        *tokenizer(THOUGHT, add_special_tokens=False).input_ids,
        *tokenizer.convert_tokens_to_ids(["</think>"]),
        *tokenizer(ANSWER, add_special_tokens=False).input_ids,
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
    ]
    if len(set(chain)) != len(chain):
        raise RuntimeError("the chain repeats a token: the next one would be ambiguous")
    torch.manual_seed(0)
    config = tiny_llama_config(
        vocab_size=len(tokenizer), tie_word_embeddings=False, max_position_embeddings=1024
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embeddings = model.model.embed_tokens.weight
        head = model.lm_head.weight
        head.zero_()
        for token, following in itertools.pairwise(chain):
            head[following] = 20 * embeddings[token] / embeddings[token].norm()
    model.save_pretrained(directory)
    return directory
