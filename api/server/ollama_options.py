"""What Ollama clients send beside their prompt: `options` (sampling and runner settings)
and top-level fields, with what this server does with each (see unsupported.py)."""

from pydantic import BaseModel, ConfigDict, Field

from api.server.generation import sampling_params
from api.server.unsupported import Neutral, anything, empty, one_of
from engine.sampling_params import SamplingParams
from engine.structured_outputs import StructuredOutputs

# Ollama's runner options (where and how the model runs) change no answer: accepted. Its
# other sampling options are refused unless they ask for nothing.
RUNNER_OPTIONS = (
    "num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu", "num_keep", "low_vram",
    "use_mmap", "use_mlock", "numa", "vocab_only", "f16_kv", "logits_all", "embedding_only",
)  # fmt: skip
OPTIONS_NEUTRAL: dict[str, Neutral] = dict.fromkeys(RUNNER_OPTIONS, anything) | {
    "repeat_penalty": one_of(1),
    "presence_penalty": one_of(0),
    "frequency_penalty": one_of(0),
    "min_p": one_of(0),
    "typical_p": one_of(1),
    "tfs_z": one_of(1),
    "mirostat": one_of(0),
    "mirostat_tau": anything,  # these three only act with a penalty or mirostat on
    "mirostat_eta": anything,
    "repeat_last_n": anything,
    "penalize_newline": anything,
}
NEUTRAL: dict[str, Neutral] = {
    "images": empty,
    "context": empty,
    "template": empty,
    "suffix": empty,
}
# `keep_alive` on embeddings: the library's embedder stays loaded for the server's life.
EMBED_NEUTRAL: dict[str, Neutral] = {
    "keep_alive": anything,
    "options": anything,
    "truncate": one_of(True),  # the embedder truncates what it cannot read, as Ollama does
}


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")  # others: refused or accepted, OPTIONS_NEUTRAL

    temperature: float = Field(0.8, ge=0, le=2)  # Ollama's defaults
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(40, ge=-1)
    num_predict: int | None = None  # -1 or None: until EOS or the context is full
    seed: int | None = None
    stop: list[str] | None = None

    def rag_temperature(self) -> float | None:
        """The request's own temperature; None (greedy, the RAG default) when it set none."""
        return self.temperature if "temperature" in self.model_fields_set else None

    def max_tokens(self) -> int | None:
        """`num_predict` as a token limit (None: until EOS or the context is full)."""
        return self.num_predict if self.num_predict and self.num_predict > 0 else None

    def sampling(self, structured: StructuredOutputs | None = None) -> SamplingParams:
        return sampling_params(
            structured=structured,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=self.max_tokens(),
            stop=self.stop,
            seed=self.seed,
        )
