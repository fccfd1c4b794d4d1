"""The offline batch API, as vLLM users know it: `LLM(model).generate(prompts, params)`."""

from collections.abc import Generator
from collections.abc import Sequence as Seq
from dataclasses import fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.errors import InvalidInputError
from engine.config import EngineConfig
from engine.errors import EngineStepError
from engine.llm_engine import LLMEngine
from engine.outputs import RequestOutput
from engine.sampling_params import SamplingParams

Prompt = str | list[int]
Message = dict[str, str]

PROGRESS_BAR_MIN_PROMPTS = 32  # smaller batches finish before a bar says anything useful


class LLM:
    """A model with its paged KV cache, generating for many prompts at once.

    Args:
        model: a library name (`pagedrag models`), a Hugging Face model directory or a
            `.gguf` file; None means the default model.
        dtype: "float32" or "bfloat16"; None picks the fastest for the device.
        enable_prefix_caching: share the KV blocks of identical prompt prefixes.
        block_size: tokens per KV block.
        **kwargs: any other field of `EngineConfig` (kv_cache_memory, max_num_seqs,
            tensor_parallel_size, pipeline_parallel_size, ...).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        dtype: str | None = None,
        enable_prefix_caching: bool = True,
        block_size: int = 16,
        **kwargs: Any,
    ) -> None:
        known = {f.name for f in fields(EngineConfig)}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"unknown LLM arguments: {', '.join(sorted(unknown))}")
        config = EngineConfig(
            model=model,
            dtype=dtype,
            enable_prefix_caching=enable_prefix_caching,
            block_size=block_size,
            **kwargs,
        )
        self.engine = LLMEngine(config)

    def close(self) -> None:
        """Stop the worker processes of a parallel engine (`tensor_parallel_size` > 1);
        they stop with this process otherwise."""
        self.engine.close()

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def model_name(self) -> str:
        """The model's public name: its library name, else its folder's or file's."""
        return self.engine.model_name

    @property
    def model_path(self) -> Path:
        """The local Hugging Face-format directory the model was loaded from."""
        return self.engine.model_path

    @property
    def max_model_len(self) -> int:
        """Most tokens a sequence may hold, prompt and output together."""
        return self.engine.max_model_len

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def generate(
        self,
        prompts: Prompt | Seq[Prompt],
        sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
        *,
        use_tqdm: bool | None = None,
        cache_salt: str | None = None,
    ) -> list[RequestOutput]:
        """Generate for every prompt; outputs come back in input order.

        A prompt is text (tokenized as the model's Hugging Face tokenizer does by
        default) or a list of token ids. One `SamplingParams` applies to all prompts;
        a list gives one per prompt. A request whose part of a step raised comes back with
        `finish_reason` "error" and the exception in `error`; the others are unaffected.
        """
        prompt_list = _as_prompt_list(prompts)
        params = _per_prompt(sampling_params, len(prompt_list))
        request_ids: list[str] = []
        try:
            for prompt, p in zip(prompt_list, params, strict=True):
                request_ids.append(self.engine.add_request(prompt, p, cache_salt=cache_salt))
        except Exception:
            for request_id in request_ids:  # all or nothing: no orphans left in the engine
                self.engine.abort_request(request_id)
            raise
        return self._run(request_ids, use_tqdm)

    def chat(
        self,
        messages: list[Message] | Seq[list[Message]],
        sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
        *,
        use_tqdm: bool | None = None,
        add_generation_prompt: bool = True,
    ) -> list[RequestOutput]:
        """Generate replies to conversations, rendered with the tokenizer's chat template."""
        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        prompts = [
            self.encode_chat(conversation, add_generation_prompt)  # type: ignore[arg-type]
            for conversation in conversations
        ]
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm)

    def stream(
        self, prompt: Prompt, sampling_params: SamplingParams | None = None
    ) -> Generator[str, None, None]:
        """Yield the generated text piece by piece as tokens arrive (one request).

        Closing the iterator early aborts the request and frees its blocks.
        """
        request_id = self.engine.add_request(prompt, sampling_params or SamplingParams())
        shown = 0
        try:
            while True:
                for output in self.engine.step():
                    if output.request_id != request_id:
                        continue
                    if output.error is not None:
                        raise EngineStepError(
                            f"the request failed: {output.error}"
                        ) from output.error
                    if len(output.text) > shown:
                        yield output.text[shown:]
                        shown = len(output.text)
                    if output.finished:
                        return
        finally:
            self.engine.abort_request(request_id)

    def encode_chat(
        self, conversation: list[Message], add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of a conversation under the model's chat template."""
        text = self.tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _run(self, request_ids: list[str], use_tqdm: bool | None) -> list[RequestOutput]:
        show = use_tqdm if use_tqdm is not None else len(request_ids) >= PROGRESS_BAR_MIN_PROMPTS
        finished: dict[str, RequestOutput] = {}
        with tqdm(total=len(request_ids), desc="generating", unit="req", disable=not show) as bar:
            while self.engine.has_unfinished_requests():
                for output in self.engine.step():
                    if output.finished:
                        finished[output.request_id] = output
                        bar.update(1)
        return [finished[request_id] for request_id in request_ids]


def _as_prompt_list(prompts: Prompt | Seq[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    prompt_list = list(prompts)
    if prompt_list and all(isinstance(token, int) for token in prompt_list):
        return [prompt_list]  # type: ignore[list-item]  # one prompt given as token ids
    return prompt_list  # type: ignore[return-value]


def _per_prompt(
    sampling_params: SamplingParams | Seq[SamplingParams] | None, count: int
) -> list[SamplingParams]:
    if sampling_params is None:
        return [SamplingParams()] * count
    if isinstance(sampling_params, SamplingParams):
        return [sampling_params] * count
    if len(sampling_params) != count:
        raise InvalidInputError(f"got {len(sampling_params)} sampling params for {count} prompts")
    return list(sampling_params)
