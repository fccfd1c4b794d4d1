"""GGUF file -> Hugging Face directory (safetensors, tokenizer, generation config).

`transformers` reads GGUF and dequantizes it. A model loaded that way cannot be
saved directly (it remembers its quantization), so it is rebuilt from its config
without `quantization_config` and the dequantized weights are copied in.
"""

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

from engine.errors import ModelIntegrityError, UnsupportedModelError
from engine.library.store import MANIFEST


def gguf_architecture(path: Path, shown_as: Path | None = None) -> str:
    """The `general.architecture` of a GGUF file; a file that is not GGUF is refused.

    Args:
        path: the file to read.
        shown_as: the name to put in error messages (the user's file, not a temporary link).
    """
    from gguf import GGUFReader  # imported here: numpy-heavy, unneeded by fast commands

    try:
        field = GGUFReader(path).fields["general.architecture"]
        return str(field.contents())
    except Exception as error:  # gguf raises bare ValueError/KeyError/IndexError on bad files
        raise ModelIntegrityError(
            f"{shown_as or path} is not a valid GGUF file ({one_line(error)}); "
            "it may be truncated or corrupt: copy or download it again"
        ) from error


def check_gguf_architecture(path: Path, shown_as: Path | None = None) -> str:
    """The file's architecture, if the engine can run it; else UnsupportedModelError."""
    from engine.models import SUPPORTED_GGUF_ARCHITECTURES

    architecture = gguf_architecture(path, shown_as)
    if architecture not in SUPPORTED_GGUF_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{shown_as or path} is a {architecture!r} model; PagedRAG runs "
            f"{', '.join(SUPPORTED_GGUF_ARCHITECTURES)}: pick a model of one of those"
        )
    return architecture


def convert_gguf(
    gguf_path: Path,
    out_dir: Path,
    manifest: dict[str, Any],
    *,
    progress: bool = True,
    shown_as: Path | None = None,
) -> None:
    """Write a complete model directory; the manifest is written last, marking it complete.

    Args:
        gguf_path: the GGUF file to convert.
        out_dir: the directory to create (inside a build folder: the caller moves it).
        manifest: what `pagedrag.json` records; `architecture` and the time taken are added.
        progress: show transformers' progress bars.
        shown_as: the name to put in error messages (the user's file, not a temporary link).
    """
    architecture = check_gguf_architecture(gguf_path, shown_as)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    with _progress_bars(progress):
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            # NOTE: dequantized straight to bf16 (the stored dtype): in fp32 the 1.5B
            # model's conversion peaked at 11 GB of memory.
            quantized = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16
            )
        except Exception as error:  # transformers' GGUF reader raises many untyped errors
            raise ModelIntegrityError(
                f"{shown_as or gguf_path} could not be read as a model "
                f"({one_line(error)}); it may be truncated or corrupt"
            ) from error
        config = quantized.config
        # NOTE: tie_word_embeddings stays as transformers derived it from the GGUF
        # (Qwen2.5-Coder's file has its own output.weight; SmolLM2's does not).
        del config.quantization_config
        config.dtype = torch.bfloat16
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(quantized.state_dict())
        generation_config = quantized.generation_config
        del quantized  # its weights are copied: free them before writing the new ones
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        generation_config.save_pretrained(out_dir)
    manifest = {
        **manifest,
        "architecture": architecture,
        "converted_in_s": round(time.perf_counter() - started, 1),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


def one_line(error: BaseException) -> str:
    """An exception's text on one line: the CLI prints every error as a single line."""
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Silences transformers' bars for a quiet pull, restoring the global setting after.

    NOTE: the GGUF reader uses a bare `tqdm` that ignores transformers' switch; bars
    write to `sys.stderr` as it is when they start, so a quiet pull redirects it.
    """
    from transformers.utils import logging as hf_logging

    if enabled:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with redirect_stderr(io.StringIO()):
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
