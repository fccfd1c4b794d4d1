"""What the engine hands back for each request, in vLLM's shapes: a `RequestOutput`
whose `outputs[0]` is the `CompletionOutput` (its `text`, `token_ids`, ... are also on the
request output itself, for short scripts)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Logprob:
    """A token's log-probability, where vLLM scripts read it (`.logprob`)."""

    logprob: float


@dataclass(frozen=True)
class CompletionOutput:
    """One generated sequence, as vLLM's `RequestOutput.outputs[i]`."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None  # of the chosen tokens; None without logprobs
    logprobs: list[dict[int, Logprob]] | None  # per token: the chosen and the most likely
    finish_reason: str | None


@dataclass
class RequestOutput:
    """The state of one request after a step, or its final result once `finished`."""

    request_id: str
    prompt: str | None  # None when the request was given as token ids
    prompt_token_ids: list[int]
    text: str  # the generated text so far, without stop strings
    token_ids: list[int]  # generated token ids only
    num_cached_tokens: int  # prompt tokens served from the prefix or the passage cache
    finish_reason: str | None  # "stop", "length", "abort" or "error"; None while running
    finished: bool
    # Per generated token, token id -> log-probability: the chosen token and the most
    # likely ones. None unless the request's SamplingParams.logprobs asked for them.
    logprobs: list[dict[int, float]] | None = None
    # With finish_reason "error": what its part of the step raised. The other requests
    # of that step went on.
    error: BaseException | None = None
    # With n > 1, every sample (the fields above are sample 0's); None: the one above.
    samples: list[CompletionOutput] | None = None
    # Of num_cached_tokens, those copied from passages cached at another position, and
    # how many passages they came from (passage_cache.py).
    num_passage_tokens: int = 0
    num_reused_passages: int = 0

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def outputs(self) -> list[CompletionOutput]:
        """The generated sequences, as vLLM lists them (n of them)."""
        if self.samples is not None:
            return self.samples
        logprobs = cumulative = None
        if self.logprobs is not None:
            logprobs = [{t: Logprob(v) for t, v in step.items()} for step in self.logprobs]
            chosen = zip(self.token_ids, self.logprobs, strict=False)
            cumulative = sum(step[token] for token, step in chosen if token in step)
        output = CompletionOutput(
            0, self.text, self.token_ids, cumulative, logprobs, self.finish_reason
        )
        return [output]
