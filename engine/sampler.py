"""Chooses each sequence's next token from its logits.

Penalties first (rows that ask for them), then greedy rows take the argmax. Sampled
rows are scaled by temperature, cut to top-k and top-p, and drawn with the request's
own generator, so a seeded request gives the same tokens whatever else shares its
batch. Log-probabilities, where a request asks for them, are the model's own (before
penalties, temperature and filtering), as vLLM's.
"""

import torch

from engine.sampling_params import SamplingParams


def sample(
    logits: torch.Tensor,  # [N, vocab] float32
    params: list[SamplingParams],
    generators: list[torch.Generator | None],  # per row; None: the default generator
) -> list[int]:
    next_tokens = logits.argmax(dim=-1)  # [N]
    sampled_rows = [row for row, p in enumerate(params) if not p.is_greedy]
    if sampled_rows:
        probs = _filtered_probs(logits[sampled_rows], [params[row] for row in sampled_rows])
        for probs_row, row in zip(probs, sampled_rows, strict=True):
            next_tokens[row] = torch.multinomial(probs_row, 1, generator=generators[row])[0]
    return next_tokens.tolist()


def penalized(
    logits: torch.Tensor,  # [N, vocab]
    params: list[SamplingParams],
    prompts: list[list[int]],  # per row: the prompt's token ids
    outputs: list[list[int]],  # per row: the tokens generated so far
) -> torch.Tensor:
    """`logits` with each row's penalties applied, as vLLM applies them: presence and
    frequency over the generated tokens, repetition over the prompt's and those. The
    input is left as it is (its log-probabilities are reported unpenalized)."""
    rows = [row for row, p in enumerate(params) if p.penalizes]
    if not rows:
        return logits
    logits = logits.clone()
    vocab = logits.shape[-1]
    for row in rows:
        p, generated = params[row], torch.tensor(outputs[row], dtype=torch.long)
        counts = torch.bincount(generated, minlength=vocab)[:vocab].to(logits.device)
        if p.repetition_penalty != 1.0:
            seen = counts > 0
            seen[torch.tensor(prompts[row], dtype=torch.long)] = True
            scores = logits[row]
            scaled = torch.where(
                scores > 0, scores / p.repetition_penalty, scores * p.repetition_penalty
            )
            logits[row] = torch.where(seen.to(scores.device), scaled, scores)
        logits[row] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
    return logits


def token_logprobs(
    logits: torch.Tensor,  # [vocab] float32, one row
    token_id: int,
    top: int,
) -> dict[int, float]:
    """The chosen token's log-probability and those of the `top` most likely tokens
    (fewer when a grammar forbids the rest: a -inf is no probability to report)."""
    logprobs = logits.log_softmax(dim=-1)
    values, ids = logprobs.topk(top)
    chosen = {token_id: logprobs[token_id].item()}
    top_entries = zip(ids.tolist(), values.tolist(), strict=True)
    return {**{t: v for t, v in top_entries if v != float("-inf")}, **chosen}


def _filtered_probs(
    logits: torch.Tensor,  # [M, vocab]
    params: list[SamplingParams],
) -> torch.Tensor:  # [M, vocab], each row sums to 1
    device = logits.device
    temperature = torch.tensor([p.temperature for p in params], device=device)[:, None]
    logits = logits / temperature
    vocab = logits.shape[-1]
    # NOTE: clamped here, in Python: a top_k past int64 (10**20) or a top_p that rounds to
    # 0 in float32 (5e-324) would otherwise fail the step for every request in it.
    top_k = torch.tensor([min(p.top_k, vocab) if p.top_k > 0 else vocab for p in params])
    top_p = torch.tensor([p.top_p for p in params], device=device)
    sorted_logits, sorted_ids = logits.sort(dim=-1, descending=True)  # [M, vocab]
    ranks = torch.arange(vocab, device=device)[None, :]
    sorted_logits.masked_fill_(ranks >= top_k.to(device)[:, None], float("-inf"))
    sorted_probs = sorted_logits.softmax(dim=-1)
    # Keep a token while the mass of the tokens ranked above it is still below top_p;
    # the most likely token always survives.
    mass_above = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_logits.masked_fill_((mass_above >= top_p[:, None]) & (ranks > 0), float("-inf"))
    filtered = torch.full_like(logits, float("-inf")).scatter(-1, sorted_ids, sorted_logits)
    return filtered.softmax(dim=-1)
