"""GGUF file -> Hugging Face directory (safetensors, tokenizer, generation config).

`transformers` reads GGUF and dequantizes it. A model loaded that way cannot be
saved directly (it remembers its quantization), so it is rebuilt from its config
without `quantization_config` and the dequantized weights are copied in.
"""

import json
import time
from pathlib import Path

from engine.errors import ModelIntegrityError, UnsupportedModelError
from engine.library.store import MANIFEST


def gguf_architecture(path: Path) -> str:
    """The `general.architecture` of a GGUF file; a file that is not GGUF is refused."""
    from gguf import GGUFReader  # imported here: numpy-heavy, unneeded by fast commands

    try:
        field = GGUFReader(path).fields["general.architecture"]
        return str(field.contents())
    except Exception as error:  # gguf raises bare ValueError/KeyError/IndexError on bad files
        raise ModelIntegrityError(f"{path} is not a valid GGUF file ({error})") from error


def convert_gguf(gguf_path: Path, out_dir: Path, manifest: dict, progress: bool = True) -> None:
    """Write a complete model directory; the manifest is written last, marking it complete."""
    from engine.models import SUPPORTED_GGUF_ARCHITECTURES

    architecture = gguf_architecture(gguf_path)
    if architecture not in SUPPORTED_GGUF_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{gguf_path.name} is a {architecture!r} model; PagedRAG runs "
            f"{', '.join(SUPPORTED_GGUF_ARCHITECTURES)}"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except Exception as error:  # transformers' GGUF reader raises many untyped errors
        raise ModelIntegrityError(f"{gguf_path.name} could not be read: {error}") from error
    config = quantized.config
    del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantized.state_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    quantized.generation_config.save_pretrained(out_dir)
    manifest = {
        **manifest,
        "architecture": architecture,
        "converted_in_s": round(time.perf_counter() - started, 1),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
