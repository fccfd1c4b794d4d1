"""Token log-probabilities in OpenAI's two forms: chat's `logprobs.content` list and the
legacy completions' parallel lists, from what the engine returns for each token (the
chosen token's log-probability and those of the most likely ones), for one generation or
for each sample of n > 1."""

from collections.abc import Callable
from dataclasses import dataclass

from api.server.generation import Generation
from api.server.wire.openai import ChatLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob
from engine.outputs import CompletionOutput


@dataclass(frozen=True)
class LogprobsAsked:
    """A request's `logprobs` ask: how many alternatives per token, and how a token id
    reads as text."""

    top: int
    token_text: Callable[[int], str]

    def chat(self, sequence: Generation | CompletionOutput, start: int = 0) -> ChatLogprobs:
        """The entries of the tokens from `start` on (a stream sends each chunk's own)."""
        token_ids, steps = _steps(sequence)
        pairs = zip(token_ids[start:], steps[start:], strict=False)
        return ChatLogprobs(content=[self._entry(token, step) for token, step in pairs])

    def completion(
        self, sequence: Generation | CompletionOutput, start: int = 0, offset: int = 0
    ) -> CompletionLogprobs:
        """The lists for the tokens from `start` on, the first at character `offset`."""
        token_ids, all_steps = _steps(sequence)
        steps = all_steps[start:]
        tokens = token_ids[start : start + len(steps)]
        texts = [self.token_text(token) for token in tokens]
        offsets = []
        for text in texts:
            offsets.append(offset)
            offset += len(text)
        return CompletionLogprobs(
            tokens=texts,
            token_logprobs=[step[token] for token, step in zip(tokens, steps, strict=True)],
            top_logprobs=[
                {self.token_text(t): value for t, value in self._top(step)} for step in steps
            ],
            text_offset=offsets,
        )

    def _entry(self, token: int, step: dict[int, float]) -> TokenLogprob:
        text = self.token_text(token)
        return TokenLogprob(
            token=text,
            logprob=step[token],
            bytes=list(text.encode()),
            top_logprobs=[self._top_entry(t, value) for t, value in self._top(step)],
        )

    def _top_entry(self, token: int, value: float) -> TopLogprob:
        text = self.token_text(token)
        return TopLogprob(token=text, logprob=value, bytes=list(text.encode()))

    def _top(self, step: dict[int, float]) -> list[tuple[int, float]]:
        """The `top` most likely tokens, best first (the chosen one, when it ranks lower,
        is in `step` only for its own entry)."""
        return sorted(step.items(), key=lambda item: item[1], reverse=True)[: self.top]


def _steps(sequence: Generation | CompletionOutput) -> tuple[list[int], list[dict[int, float]]]:
    """A sequence's tokens and each one's log-probabilities: a single generation's, or
    one sample's of n > 1 (vLLM's `Logprob` objects)."""
    if isinstance(sequence, Generation):
        return sequence.token_ids, sequence.logprobs or []
    steps = [{t: lp.logprob for t, lp in step.items()} for step in sequence.logprobs or []]
    return sequence.token_ids, steps
