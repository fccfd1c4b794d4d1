"""How one request wants its tokens chosen and when it wants generation to stop."""

import math
from dataclasses import dataclass

from common.errors import InvalidInputError
from engine.structured_outputs import StructuredOutputs

MAX_LOGPROBS = 20  # as OpenAI's top_logprobs
MAX_SAMPLES = 16  # `n`: samples of one prompt, each a sequence of its own
MIN_REPETITION_PENALTY = 0.01  # 100 times a logit: still finite in fp32
# Temperatures below this sample as greedy (vLLM's _SAMPLING_EPS): dividing logits by a
# temperature that rounds to 0 in float32 would turn a row into infinities and NaNs.
GREEDY_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    """vLLM-compatible sampling parameters.

    `temperature == 0` means greedy decoding; top-k and top-p are then ignored.
    """

    temperature: float = 1.0
    top_p: float = 1.0  # keep the smallest set of tokens whose probability reaches top_p
    top_k: int = -1  # keep the k most likely tokens; -1 (or 0) keeps all, as in vLLM
    max_tokens: int | None = 16  # None: until EOS or the model's context length
    stop: tuple[str, ...] = ()  # stop strings; the matched string is not part of the output
    stop_token_ids: tuple[int, ...] = ()  # extra token ids that end generation (kept in output)
    ignore_eos: bool = False  # keep going past EOS (benchmarks want fixed output lengths)
    seed: int | None = None  # per-request seed: the same seed gives the same sample
    skip_special_tokens: bool = True  # drop special tokens from the output text
    # Log-probabilities returned with each generated token: the chosen token's and those of
    # the `logprobs` most likely ones (vLLM's meaning); None returns none.
    logprobs: int | None = None
    # Samples of the prompt, returned as `RequestOutput.outputs`; they share its KV blocks.
    # With a seed, sample i draws from seed + i.
    n: int = 1
    # JSON only, or only what a JSON Schema allows (structured_outputs.py); None: free text.
    structured_outputs: StructuredOutputs | None = None
    # OpenAI's and vLLM's penalties: presence and frequency subtract from the logits of
    # tokens already generated (once, and once per time); repetition divides a positive
    # logit (multiplies a negative one) of any token in the prompt or the output.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        # Accept a single string or any iterable, as vLLM users write them.
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise InvalidInputError(
                f"temperature must be a finite number >= 0, got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise InvalidInputError(
                f"top_k must be -1 (all) or a positive number, got {self.top_k}"
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise InvalidInputError("stop strings must not be empty")
        if not 1 <= self.n <= MAX_SAMPLES:
            raise InvalidInputError(f"n must be between 1 and {MAX_SAMPLES}, got {self.n}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -2 <= value <= 2):
                raise InvalidInputError(f"{name} must be between -2 and 2, got {value}")
        # NOTE: a floor, since dividing fp32 logits by 5e-324 (0 in fp32) makes infinities.
        if not (
            math.isfinite(self.repetition_penalty)
            and MIN_REPETITION_PENALTY <= self.repetition_penalty <= 2
        ):
            raise InvalidInputError(
                f"repetition_penalty must be between {MIN_REPETITION_PENALTY} and 2, "
                f"got {self.repetition_penalty}"
            )
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise InvalidInputError(
                f"logprobs must be between 0 and {MAX_LOGPROBS}, got {self.logprobs}"
            )

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    @property
    def penalizes(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty) or (
            self.repetition_penalty != 1.0
        )
