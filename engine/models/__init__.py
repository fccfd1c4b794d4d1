"""The decoder implementations the engine runs, keyed by Hugging Face `model_type`."""

from engine.models.decoder import DecoderForCausalLM

# Llama and Qwen2 differ only in configuration (QKV bias, RoPE theta, tied head),
# which `DecoderConfig.from_hf` reads; one implementation serves both.
MODEL_CLASSES: dict[str, type[DecoderForCausalLM]] = {
    "llama": DecoderForCausalLM,
    "qwen2": DecoderForCausalLM,
}
SUPPORTED_MODEL_TYPES = tuple(MODEL_CLASSES)
# The same names as GGUF's `general.architecture`.
SUPPORTED_GGUF_ARCHITECTURES = SUPPORTED_MODEL_TYPES

__all__ = [
    "MODEL_CLASSES",
    "SUPPORTED_GGUF_ARCHITECTURES",
    "SUPPORTED_MODEL_TYPES",
    "DecoderForCausalLM",
]
