"""Build a decoder from a Hugging Face model directory and load its safetensors."""

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from engine.errors import ModelIntegrityError, ModelNotFoundError, UnsupportedModelError
from engine.models import MODEL_CLASSES, quantized_weights
from engine.models.config import DecoderConfig
from engine.models.decoder import DecoderForCausalLM
from engine.models.packed_linear import can_pack, pack_linears
from engine.models.quantization import QuantizationConfig, quantize_model
from engine.models.rope import RotaryEmbedding


def read_hf_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelNotFoundError(
            f"{model_dir} is not a Hugging Face model directory (no config.json)"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelIntegrityError(f"{path} is not valid JSON: {error}") from error


def read_decoder_config(model_dir: Path) -> DecoderConfig:
    """The decoder's settings from `config.json`, refusing a model the engine cannot run."""
    return _decoder_config(read_hf_config(model_dir), model_dir)


def load_model(
    model_dir: Path,
    dtype: torch.dtype,
    device: torch.device,
    quantization: QuantizationConfig | None = None,
    quantized_path: Path | None = None,
) -> DecoderForCausalLM:
    """The decoder with its weights, in `dtype` on `device`, ready for inference.

    Args:
        quantization: weight-only quantization of the linears; None keeps them in `dtype`.
        quantized_path: where the quantized weights are kept between starts; they are
            made once, on the first start that asks for them, and loaded after that.
    """
    hf_config = read_hf_config(model_dir)
    config = _decoder_config(hf_config, model_dir)
    model_type = hf_config["model_type"]
    # NOTE: built on the meta device so no time goes into random initialisation of
    # weights that are overwritten at once.
    with torch.device("meta"):
        model = MODEL_CLASSES[model_type](config)
    model = model.to(dtype).to_empty(device=device)
    for module in model.modules():
        if isinstance(module, RotaryEmbedding):
            module.reset_tables()
    try:
        model.load_weights(_read_safetensors(model_dir))
    except (KeyError, RuntimeError) as error:
        raise ModelIntegrityError(
            f"weights in {model_dir} do not fit the config: {error}"
        ) from error
    if quantization is not None:
        _quantize(model, model_dir, quantization, dtype, quantized_path)
    if can_pack(dtype, device):
        pack_linears(model)
    return model.eval()


def _quantize(
    model: DecoderForCausalLM,
    model_dir: Path,
    config: QuantizationConfig,
    dtype: torch.dtype,
    path: Path | None,
) -> None:
    model.untie_lm_head()
    fingerprint = quantized_weights.weights_fingerprint(model_dir)
    saved = quantized_weights.load_saved(path, fingerprint) if path else {}
    try:
        tensors = quantize_model(model, config, dtype, saved)
    except (RuntimeError, ValueError) as error:
        raise ModelIntegrityError(f"quantized weights in {path} do not fit: {error}") from error
    if path is not None and tensors.keys() != saved.keys():
        quantized_weights.save(path, tensors, fingerprint)


def _decoder_config(hf_config: dict, model_dir: Path) -> DecoderConfig:
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise UnsupportedModelError(
            f"{model_dir} holds a {model_type!r} model; PagedRAG runs "
            f"{', '.join(MODEL_CLASSES)}: pick a model of one of those"
        )
    return DecoderConfig.from_hf(hf_config, source=str(model_dir / "config.json"))


def _read_safetensors(model_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"{model_dir} has no .safetensors weights")
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as reader:
                for name in reader.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    yield name, reader.get_tensor(name)
        except Exception as error:  # safetensors raises its own untyped errors on bad files
            raise ModelIntegrityError(f"{file} is corrupt: {error}") from error
