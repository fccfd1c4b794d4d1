"""What the engine hands back for each request."""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class RequestOutput:
    """The state of one request after a step, or its final result once `finished`."""

    request_id: str
    prompt: str | None  # None when the request was given as token ids
    prompt_token_ids: list[int]
    text: str  # the generated text so far, without stop strings
    token_ids: list[int]  # generated token ids only
    num_cached_tokens: int  # prompt tokens served from the prefix cache
    finish_reason: str | None  # "stop", "length", "abort" or "error"; None while running
    finished: bool
    # Per generated token, token id -> log-probability: the chosen token and the most
    # likely ones. None unless the request's SamplingParams.logprobs asked for them.
    logprobs: list[dict[int, float]] | None = None
    # With finish_reason "error": what its part of the step raised. The other requests
    # of that step went on.
    error: BaseException | None = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)


def final_output(outputs: Iterable[RequestOutput]) -> RequestOutput:
    """The last output of a request's stream, once it has run to the end."""
    last = None
    for last in outputs:  # noqa: B007 - the final output is the one wanted
        pass
    if last is None:
        raise RuntimeError("the engine finished a request without producing a token")
    return last
