"""The model's own Hugging Face tokenizer, or a one-line error saying what the folder lacks."""

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from engine.errors import ModelIntegrityError, UnsupportedModelError

# Any one of these lets transformers build a tokenizer (tokenizer_config.json alone may not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the model in `model_dir`.

    Raises:
        ModelIntegrityError: the folder has no tokenizer files, or they are corrupt.
        UnsupportedModelError: the files are there but transformers cannot build them.
    """
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:  # NOTE: ValueError, OSError or tokenizers' untyped Exception
        raise _tokenizer_error(model_dir, error) from error


def _tokenizer_error(model_dir: Path, error: Exception) -> Exception:
    advice = (
        "copy the tokenizer files from where the model came from into that folder, "
        "or save them there with tokenizer.save_pretrained()"
    )
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        return ModelIntegrityError(
            f"{model_dir} has no tokenizer ({', '.join(TOKENIZER_FILES)}); {advice}"
        )
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    if isinstance(error, ValueError) and "JSON" in type(error).__name__:
        return ModelIntegrityError(f"the tokenizer in {model_dir} is corrupt ({reason}); {advice}")
    return UnsupportedModelError(
        f"the tokenizer in {model_dir} cannot be loaded ({reason}); {advice}"
    )
