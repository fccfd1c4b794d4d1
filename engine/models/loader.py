"""Build a decoder from a Hugging Face model directory and load its safetensors."""

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from engine.distributed.tensor_parallel import SINGLE_RANK, TensorParallelGroup
from engine.errors import (
    EngineConfigError,
    ModelIntegrityError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from engine.models import MODEL_CLASSES, quantized_weights
from engine.models.config import DecoderConfig
from engine.models.decoder import DecoderForCausalLM
from engine.models.packed_linear import can_compact, can_pack, compact_linears, pack_linears
from engine.models.quantization import QuantizationConfig, quantize_model
from engine.models.rope import RotaryEmbedding
from engine.models.sharding import ModelShard


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
    shard: ModelShard | None = None,
    tp: TensorParallelGroup = SINGLE_RANK,
) -> DecoderForCausalLM:
    """The decoder with its weights, in `dtype` on `device`, ready for inference.

    Args:
        quantization: weight-only quantization of the linears; None keeps them in `dtype`.
        quantized_path: where the quantized weights are kept between starts; they are
            made once, on the first start that asks for them, and loaded after that
            (a shard's under a name of its own).
        shard: the part of the model this rank holds; None: all of it.
        tp: the tensor-parallel group the shard's layers reduce over.
    """
    hf_config = read_hf_config(model_dir)
    config = _decoder_config(hf_config, model_dir)
    model_type = hf_config["model_type"]
    shard = shard or ModelShard()
    try:
        shard.check(config)
    except ValueError as error:
        raise EngineConfigError(f"{model_dir.name}: {error}") from error
    if quantized_path is not None and not shard.is_whole:
        quantized_path = quantized_path.with_name(
            f"{quantized_path.stem}-tp{shard.tp_rank}of{shard.tp_size}"
            f"-pp{shard.pp_rank}of{shard.pp_size}{quantized_path.suffix}"
        )
    # NOTE: built on the meta device so no time goes into random initialisation of
    # weights that are overwritten at once.
    with torch.device("meta"):
        model = MODEL_CLASSES[model_type](config, shard, tp)
    model = model.to(dtype).to_empty(device=device)
    for module in model.modules():
        if isinstance(module, RotaryEmbedding):
            module.reset_tables()
    fingerprint, saved = "", {}
    if quantization is not None:
        fingerprint = quantized_weights.weights_fingerprint(model_dir)
        if quantized_path is not None:
            saved = quantized_weights.load_saved(quantized_path, fingerprint)
        _stage_linears(model, quantization, saved)
    try:
        model.load_weights(_read_safetensors(model_dir))
    except (KeyError, RuntimeError) as error:
        raise ModelIntegrityError(
            f"weights in {model_dir} do not fit the config: {error}"
        ) from error
    if quantization is not None:
        model.untie_lm_head()
        try:
            tensors = quantize_model(model, quantization, dtype, saved, device)
        except (RuntimeError, ValueError) as error:
            raise ModelIntegrityError(
                f"quantized weights in {quantized_path} do not fit: {error}"
            ) from error
        if quantized_path is not None and tensors.keys() != saved.keys():
            quantized_weights.save(quantized_path, tensors, fingerprint)
    if can_pack(dtype, device):
        pack_linears(model)
    elif can_compact(dtype, device):
        compact_linears(model)
    return model.eval()


def _stage_linears(
    model: DecoderForCausalLM, config: QuantizationConfig, saved: dict[str, torch.Tensor]
) -> None:
    """Give the linears about to be quantized no full-precision copy they do not need.

    NOTE: an fp32 engine (CPUs without native bf16) would otherwise load the whole model
    in fp32 before quantizing it: 11 GB at the peak for the 1.5B model, whose weights are
    3.1 GB of bf16. Linears whose quantized tensors were saved stay unallocated (meta:
    loading their weights copies nothing); int4 linears to quantize now load in bf16 (the
    library's weights are bf16; 16 levels a group lose nothing to it). The int8 ones
    keep the engine's dtype: an int8 step is fine enough for bf16's rounding to show.
    """
    for name, linear in list(model.named_modules()):
        linear_config = config.for_linear(name)
        if type(linear) is not nn.Linear or not linear_config.fits(linear):
            continue
        if f"{name}.qweight" in saved:
            staged = torch.empty(linear.weight.shape, device="meta")
        elif linear_config.method == "int4" and linear.weight.dtype == torch.float32:
            staged = torch.empty_like(linear.weight, dtype=torch.bfloat16)
        else:
            continue
        linear.weight = nn.Parameter(staged, requires_grad=False)


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
