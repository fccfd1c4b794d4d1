"""Perplexity and next-token agreement of an engine's model on real text.

The text is cut into windows of `window` tokens, each scored on its own (no context
carried over), through the engine's own forward pass and paged KV cache: what is
measured is what serves answers, quantized linears included.
"""

import math
from dataclasses import dataclass

import torch

from engine import LLM
from engine.sampling_params import SamplingParams
from engine.scheduler import ScheduledSequence
from engine.sequence import Sequence

LOGIT_ROWS = 256  # rows of [rows, vocab] float32 logits at a time: 150 MB for Qwen's vocab


@dataclass(frozen=True)
class WindowScores:
    """Per-token results of one pass over the windows."""

    nll: torch.Tensor  # [scored tokens] float64: -log p(token | the window before it)
    argmax: torch.Tensor  # [scored tokens] int64: the model's top next-token choice

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll.mean().item())

    def agreement(self, other: "WindowScores") -> float:
        """Fraction of positions where both models' top choice is the same token."""
        return (self.argmax == other.argmax).double().mean().item()


def windows(token_ids: list[int], window: int) -> list[list[int]]:
    """Whole windows only: every score then has the same context budget."""
    return [token_ids[i : i + window] for i in range(0, len(token_ids) - window + 1, window)]


@torch.inference_mode()
def score_windows(llm: LLM, token_windows: list[list[int]]) -> WindowScores:
    """Score every token of every window but the first, given the tokens before it."""
    runner = llm.engine.runner
    block_size = runner.block_size
    nll, argmax = [], []
    for tokens in token_windows:
        # NOTE: the bench owns the engine, so the window may use the pool's first blocks
        # directly, without the block manager; nothing else is running.
        seq = Sequence("perplexity", tokens, len(tokens), SamplingParams())
        seq.block_table = list(range(-(-len(tokens) // block_size)))
        model_input, _ = runner.prepare([ScheduledSequence(seq, 0, len(tokens))])
        hidden = runner.model(
            model_input.input_ids, model_input.positions, runner.kv_caches, model_input.metadata
        )  # [window, hidden]
        targets = model_input.input_ids[1:]
        for start in range(0, len(tokens) - 1, LOGIT_ROWS):
            rows = slice(start, min(start + LOGIT_ROWS, len(tokens) - 1))
            logits = runner.model.compute_logits(hidden[rows]).float()  # [rows, vocab]
            log_probs = torch.log_softmax(logits, dim=-1)
            nll.append(-log_probs.gather(1, targets[rows, None]).squeeze(1).double())
            argmax.append(logits.argmax(dim=-1))
    return WindowScores(torch.cat(nll), torch.cat(argmax))
