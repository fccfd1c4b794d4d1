"""PagedRAG's inference engine: paged KV cache, prefix sharing, continuous batching.

from engine import LLM, SamplingParams
outputs = LLM().generate(["Hello"], SamplingParams(temperature=0, max_tokens=32))
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.async_engine import AsyncLLMEngine
    from engine.config import EngineConfig
    from engine.engine_stats import EngineStats
    from engine.llm import LLM
    from engine.llm_engine import LLMEngine
    from engine.outputs import CompletionOutput, Logprob, RequestOutput
    from engine.sampling_params import SamplingParams

# NOTE: imported on first use, so that `engine.block_manager` and the CLI's fast
# commands do not pay for torch and transformers.
_EXPORTS = {
    "AsyncLLMEngine": "engine.async_engine",
    "EngineConfig": "engine.config",
    "EngineStats": "engine.engine_stats",
    "LLM": "engine.llm",
    "LLMEngine": "engine.llm_engine",
    "CompletionOutput": "engine.outputs",
    "Logprob": "engine.outputs",
    "RequestOutput": "engine.outputs",
    "SamplingParams": "engine.sampling_params",
}


__getattr__ = lazy_exports("engine", _EXPORTS)


__all__ = [
    "LLM",
    "AsyncLLMEngine",
    "CompletionOutput",
    "EngineConfig",
    "EngineStats",
    "LLMEngine",
    "Logprob",
    "RequestOutput",
    "SamplingParams",
]
